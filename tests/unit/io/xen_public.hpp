// Xen's own public headers (libxen-dev, MIT), the specification and interop oracle for
// libhv/io. Included by host tests and benchmarks only, never by libhv/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#define __XEN_INTERFACE_VERSION__ 0x00040e00
// io/ring.h leaves the barriers to its user. These are the same primitives libhv's ring
// uses (libhv/io/shared_mem.hpp), so comparisons measure the ring logic, not fences.
#define xen_mb() asm volatile("lock orl $0, (%%rsp)" ::: "memory", "cc")
#define xen_rmb() asm volatile("" ::: "memory")
#define xen_wmb() asm volatile("" ::: "memory")

#include <xen/xen.h>
#include <xen/arch-x86/cpuid.h>
#include <xen/event_channel.h>
#include <xen/features.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/blkif.h>
#include <xen/io/console.h>
#include <xen/io/ring.h>
#include <xen/memory.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/version.h>
#include <xen/errno.h>
