// Access to memory that another party (a guest, or the other end of a ring) may change
// at any moment. Every read of such memory goes through one of these helpers so that
// the compiler reads it exactly once; every value that steers hypervisor control flow
// is read once into a local and validated there (copy-then-validate).
//
// x86 is TSO: acquire loads and release stores are plain moves plus a compiler barrier;
// only store->load ordering (the event-index handshake of the rings) needs a real
// fence, and a locked read-modify-write of the stack top is the cheapest one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hv::io {

// A 32-bit view that may alias anything (used for the flags+domid word of a grant entry).
using u32_alias = std::uint32_t __attribute__((may_alias));
using u16_alias = std::uint16_t __attribute__((may_alias));

template <class T>
inline T load_acquire(const T* p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <class T>
inline T load_relaxed(const T* p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
template <class T, class U>
inline void store_release(T* p, U v) {
    __atomic_store_n(p, static_cast<T>(v), __ATOMIC_RELEASE);
}
template <class T, class U>
inline void store_relaxed(T* p, U v) {
    __atomic_store_n(p, static_cast<T>(v), __ATOMIC_RELAXED);
}

// Full barrier: orders an earlier store before a later load.
inline void full_fence() {
#if defined(__x86_64__)
    asm volatile("lock orl $0, (%%rsp)" ::: "memory", "cc");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// Copies a trivially copyable object out of shared memory into a private one, reading
// each byte at most once. The memory clobber after the copy tells the compiler that
// the shared original may have changed, so it can never re-read it in place of `out`
// (no double fetch). `out` itself does not escape: parts the caller never uses need not
// be read at all, and the rest may live in registers. (GCC gives Xen's volatile
// RING_COPY_REQUEST the same single-read semantics.)
template <class T>
inline void copy_from_shared(T& out, const void* shared) {
    static_assert(std::is_trivially_copyable_v<T>);
    __builtin_memcpy(&out, shared, sizeof(T));
    asm volatile("" ::: "memory");
}

template <class T>
inline void copy_to_shared(void* shared, const T& in) {
    static_assert(std::is_trivially_copyable_v<T>);
    __builtin_memcpy(shared, &in, sizeof(T));
}

} // namespace hv::io
