// The Xen guest ABI that libhv speaks: numbers, error codes and every structure a guest
// shares with the hypervisor or passes to a hypercall, for an x86_64 hypervisor serving
// 64-bit guests (and, where a layout differs, the 32-bit "compat" form a 32-bit guest
// uses). Written from the facts in Xen's public headers (xen/*.h, MIT); host tests
// compare every size and offset here against those headers.
//
// Tags on fields: [G] written by the guest, read by the hypervisor; [H] written by the
// hypervisor; IN / OUT for hypercall arguments. Anything [G] is untrusted: read it once
// into a private copy, then validate the copy.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hv::xen {

using domid_t = std::uint16_t;
using grant_ref_t = std::uint32_t;
using grant_handle_t = std::uint32_t;
using evtchn_port_t = std::uint32_t;
using xen_ulong_t = std::uint64_t; // 64-bit guests; compat structures spell out uint32_t
using xen_pfn_t = std::uint64_t;

inline constexpr std::uint64_t page_size = 4096;
inline constexpr unsigned page_shift = 12;

// ---- error codes (Xen's errno values; hypercalls return them negated) -----------------
namespace err {
inline constexpr int eperm = 1;
inline constexpr int enoent = 2;
inline constexpr int esrch = 3;
inline constexpr int eio = 5;
inline constexpr int e2big = 7;
inline constexpr int eagain = 11;
inline constexpr int enomem = 12;
inline constexpr int eacces = 13;
inline constexpr int efault = 14;
inline constexpr int ebusy = 16;
inline constexpr int eexist = 17;
inline constexpr int enodev = 19;
inline constexpr int einval = 22;
inline constexpr int enospc = 28;
inline constexpr int erange = 34;
inline constexpr int enosys = 38;
inline constexpr int enodata = 61;
inline constexpr int etime = 62;
inline constexpr int eopnotsupp = 95;
} // namespace err

// ---- domains --------------------------------------------------------------------------
inline constexpr domid_t domid_first_reserved = 0x7ff0;
inline constexpr domid_t domid_self = 0x7ff0;
inline constexpr domid_t domid_invalid = 0x7ff4;

// ---- hypercall numbers ----------------------------------------------------------------
namespace hc {
inline constexpr unsigned memory_op = 12;
inline constexpr unsigned set_timer_op = 15;
inline constexpr unsigned xen_version = 17;
inline constexpr unsigned console_io = 18;
inline constexpr unsigned grant_table_op = 20;
inline constexpr unsigned iret = 23; // PV only: its hypercall-page slot stays a trap
inline constexpr unsigned vcpu_op = 24;
inline constexpr unsigned sched_op = 29;
inline constexpr unsigned event_channel_op = 32;
inline constexpr unsigned hvm_op = 34;
} // namespace hc

// ---- CPUID / MSR ----------------------------------------------------------------------
inline constexpr std::uint32_t cpuid_base = 0x40000000;
inline constexpr std::uint32_t cpuid_signature_ebx = 0x566e6558; // "XenV"
inline constexpr std::uint32_t cpuid_signature_ecx = 0x65584d4d; // "MMXe"
inline constexpr std::uint32_t cpuid_signature_edx = 0x4d4d566e; // "nVMM"
inline constexpr std::uint32_t hvm_cpuid_vcpu_id_present = 1u << 3;
inline constexpr std::uint32_t hvm_cpuid_domid_present = 1u << 4;
inline constexpr std::uint32_t hypercall_msr = 0x40000000; // base of Xen's MSRs

// ---- console_io -----------------------------------------------------------------------
inline constexpr unsigned consoleio_write = 0;
inline constexpr unsigned consoleio_read = 1;

// ---- sched_op -------------------------------------------------------------------------
inline constexpr unsigned schedop_yield = 0;
inline constexpr unsigned schedop_block = 1;
inline constexpr unsigned schedop_shutdown = 2;
inline constexpr unsigned schedop_poll = 3;
inline constexpr unsigned schedop_remote_shutdown = 4;
inline constexpr unsigned schedop_shutdown_code = 5;
inline constexpr unsigned shutdown_poweroff = 0;
inline constexpr unsigned shutdown_reboot = 1;
inline constexpr unsigned shutdown_suspend = 2;
inline constexpr unsigned shutdown_crash = 3;
inline constexpr unsigned shutdown_watchdog = 4;
inline constexpr unsigned shutdown_soft_reset = 5;
inline constexpr unsigned shutdown_max = 5;
inline constexpr unsigned sched_poll_max_ports = 128;

struct sched_shutdown {
    std::uint32_t reason; // IN: shutdown_*
};
static_assert(sizeof(sched_shutdown) == 4);

struct sched_poll {
    std::uint64_t ports;    // IN: guest pointer to evtchn_port_t[nr_ports]
    std::uint32_t nr_ports; // IN
    std::uint32_t pad;
    std::uint64_t timeout;  // IN: absolute system time (ns), 0 = none
};
static_assert(sizeof(sched_poll) == 24 && offsetof(sched_poll, timeout) == 16);

struct sched_poll_compat { // 32-bit guest: 4-byte pointer, 4-byte aligned uint64_t
    std::uint32_t ports;
    std::uint32_t nr_ports;
    std::uint32_t timeout_lo, timeout_hi;
};
static_assert(sizeof(sched_poll_compat) == 16);

// ---- xen_version ----------------------------------------------------------------------
inline constexpr unsigned xenver_version = 0;
inline constexpr unsigned xenver_extraversion = 1;
inline constexpr unsigned xenver_compile_info = 2;
inline constexpr unsigned xenver_capabilities = 3;
inline constexpr unsigned xenver_changeset = 4;
inline constexpr unsigned xenver_platform_parameters = 5;
inline constexpr unsigned xenver_get_features = 6;
inline constexpr unsigned xenver_pagesize = 7;
inline constexpr unsigned xenver_guest_handle = 8;
inline constexpr unsigned xenver_commandline = 9;
inline constexpr unsigned xenver_build_id = 10;

inline constexpr std::size_t extraversion_len = 16;
inline constexpr std::size_t capabilities_len = 1024;
inline constexpr std::size_t changeset_len = 64;
inline constexpr std::size_t guest_handle_len = 16;
inline constexpr std::size_t commandline_len = 1024;

struct compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};
static_assert(sizeof(compile_info) == 144);

struct feature_info {
    std::uint32_t submap_idx; // IN
    std::uint32_t submap;     // OUT
};
static_assert(sizeof(feature_info) == 8);

inline constexpr unsigned xenfeat_writable_page_tables = 0;
inline constexpr unsigned xenfeat_auto_translated_physmap = 2;
inline constexpr unsigned xenfeat_supervisor_mode_kernel = 3;
inline constexpr unsigned xenfeat_hvm_callback_vector = 8;
inline constexpr unsigned xenfeat_hvm_safe_pvclock = 9;

// ---- memory_op ------------------------------------------------------------------------
inline constexpr unsigned xenmem_cmd_mask = 0x3f; // higher bits: continuation state
inline constexpr unsigned xenmem_add_to_physmap = 7;
inline constexpr unsigned xenmapspace_shared_info = 0;
inline constexpr unsigned xenmapspace_grant_table = 1;
inline constexpr std::uint64_t xenmapidx_grant_table_status = 0x80000000u;

struct add_to_physmap {
    domid_t domid;       // IN
    std::uint16_t size;  // IN: gmfn_range only
    std::uint32_t space; // IN: xenmapspace_*
    xen_ulong_t idx;     // IN: index within the space
    xen_pfn_t gpfn;      // IN: where the page appears in the guest
};
static_assert(sizeof(add_to_physmap) == 24 && offsetof(add_to_physmap, idx) == 8 &&
              offsetof(add_to_physmap, gpfn) == 16);

struct add_to_physmap_compat {
    domid_t domid;
    std::uint16_t size;
    std::uint32_t space;
    std::uint32_t idx;
    std::uint32_t gpfn;
};
static_assert(sizeof(add_to_physmap_compat) == 16);

// ---- hvm_op ---------------------------------------------------------------------------
inline constexpr unsigned hvmop_set_param = 0;
inline constexpr unsigned hvmop_get_param = 1;
inline constexpr std::uint32_t hvm_param_callback_irq = 0;
inline constexpr std::uint32_t hvm_param_store_pfn = 1;
inline constexpr std::uint32_t hvm_param_store_evtchn = 2;
inline constexpr std::uint32_t hvm_param_console_pfn = 17;
inline constexpr std::uint32_t hvm_param_console_evtchn = 18;
inline constexpr std::uint32_t hvm_nr_params = 39;
inline constexpr unsigned hvm_callback_type_shift = 56;
inline constexpr std::uint64_t hvm_callback_type_vector = 2;

struct hvm_param {
    domid_t domid;        // IN
    std::uint16_t pad;
    std::uint32_t index;  // IN
    std::uint64_t value;  // IN (set) / OUT (get)
};
static_assert(sizeof(hvm_param) == 16 && offsetof(hvm_param, value) == 8);

// ---- vcpu_op --------------------------------------------------------------------------
inline constexpr unsigned vcpuop_set_singleshot_timer = 8;
inline constexpr unsigned vcpuop_stop_singleshot_timer = 9;
inline constexpr unsigned vcpuop_register_vcpu_info = 10;
inline constexpr std::uint32_t vcpu_sshottmr_future = 1u << 0;

struct vcpu_set_singleshot_timer {
    std::uint64_t timeout_abs_ns; // IN
    std::uint32_t flags;          // IN: vcpu_sshottmr_*
    std::uint32_t pad;
};
static_assert(sizeof(vcpu_set_singleshot_timer) == 16);
inline constexpr std::size_t vcpu_set_singleshot_timer_compat_size = 12;

struct vcpu_register_vcpu_info {
    std::uint64_t mfn;    // IN: guest frame holding the vcpu_info
    std::uint32_t offset; // IN: byte offset within it
    std::uint32_t rsvd;
};
static_assert(sizeof(vcpu_register_vcpu_info) == 16);

// ---- shared_info / vcpu_info (the page a guest maps with add_to_physmap) ---------------
inline constexpr unsigned legacy_max_vcpus = 32;

struct vcpu_time_info {
    std::uint32_t version; // [H] odd while an update is in progress
    std::uint32_t pad0;
    std::uint64_t tsc_timestamp;
    std::uint64_t system_time;
    std::uint32_t tsc_to_system_mul;
    std::int8_t tsc_shift;
    std::uint8_t flags;
    std::uint8_t pad1[2];
};
static_assert(sizeof(vcpu_time_info) == 32);

struct vcpu_info {
    std::uint8_t evtchn_upcall_pending; // [H] set, [G] cleared before scanning
    std::uint8_t evtchn_upcall_mask;    // [G] nonzero: no upcall (like CLI)
    std::uint8_t pad0[6];
    xen_ulong_t evtchn_pending_sel;     // [H] set, [G] cleared: which pending words to scan
    std::uint64_t arch_cr2;
    std::uint64_t arch_pad;
    vcpu_time_info time;
};
static_assert(sizeof(vcpu_info) == 64);
static_assert(offsetof(vcpu_info, evtchn_pending_sel) == 8 && offsetof(vcpu_info, time) == 32);

inline constexpr unsigned evtchn_2l_words = 64; // xen_ulong_t words of each bitmap
inline constexpr unsigned evtchn_2l_nr_channels = evtchn_2l_words * 64;

struct shared_info {
    vcpu_info vcpu[legacy_max_vcpus];
    xen_ulong_t evtchn_pending[evtchn_2l_words]; // [H] set, [G] cleared
    xen_ulong_t evtchn_mask[evtchn_2l_words];    // [G] only
    std::uint32_t wc_version;
    std::uint32_t wc_sec;
    std::uint32_t wc_nsec;
    std::uint32_t wc_sec_hi;
    // arch_shared_info (PV p2m bookkeeping; unused by HVM guests)
    std::uint64_t max_pfn;
    std::uint64_t pfn_to_mfn_frame_list_list;
    std::uint64_t nmi_reason;
    std::uint64_t p2m_cr3;
    std::uint64_t p2m_vaddr;
    std::uint64_t p2m_generation;
};
static_assert(sizeof(shared_info) == 3136 && sizeof(shared_info) <= page_size);
static_assert(offsetof(shared_info, evtchn_pending) == 2048);
static_assert(offsetof(shared_info, evtchn_mask) == 2560);
static_assert(offsetof(shared_info, wc_version) == 3072);
static_assert(offsetof(shared_info, max_pfn) == 3088);

// ---- event channels -------------------------------------------------------------------
namespace evtchnop {
inline constexpr unsigned bind_interdomain = 0;
inline constexpr unsigned bind_virq = 1;
inline constexpr unsigned bind_pirq = 2;
inline constexpr unsigned close = 3;
inline constexpr unsigned send = 4;
inline constexpr unsigned status = 5;
inline constexpr unsigned alloc_unbound = 6;
inline constexpr unsigned bind_ipi = 7;
inline constexpr unsigned bind_vcpu = 8;
inline constexpr unsigned unmask = 9;
inline constexpr unsigned reset = 10;
inline constexpr unsigned init_control = 11;
inline constexpr unsigned expand_array = 12;
inline constexpr unsigned set_priority = 13;
} // namespace evtchnop

inline constexpr std::uint32_t evtchnstat_closed = 0;
inline constexpr std::uint32_t evtchnstat_unbound = 1;
inline constexpr std::uint32_t evtchnstat_interdomain = 2;
inline constexpr std::uint32_t evtchnstat_pirq = 3;
inline constexpr std::uint32_t evtchnstat_virq = 4;
inline constexpr std::uint32_t evtchnstat_ipi = 5;

inline constexpr std::uint32_t virq_timer = 0;
inline constexpr std::uint32_t virq_debug = 1;
inline constexpr std::uint32_t virq_console = 2;
inline constexpr std::uint32_t virq_xenoprof = 7;
inline constexpr std::uint32_t virq_xenpmu = 13;
inline constexpr std::uint32_t virq_arch_0 = 16;
inline constexpr std::uint32_t nr_virqs = 24;

struct evtchn_alloc_unbound {
    domid_t dom, remote_dom; // IN
    evtchn_port_t port;      // OUT
};
static_assert(sizeof(evtchn_alloc_unbound) == 8);

struct evtchn_bind_interdomain {
    domid_t remote_dom;        // IN
    std::uint16_t pad;
    evtchn_port_t remote_port; // IN
    evtchn_port_t local_port;  // OUT
};
static_assert(sizeof(evtchn_bind_interdomain) == 12);

struct evtchn_bind_virq {
    std::uint32_t virq; // IN
    std::uint32_t vcpu; // IN
    evtchn_port_t port; // OUT
};
static_assert(sizeof(evtchn_bind_virq) == 12);

struct evtchn_bind_ipi {
    std::uint32_t vcpu; // IN
    evtchn_port_t port; // OUT
};
static_assert(sizeof(evtchn_bind_ipi) == 8);

struct evtchn_port_arg { // close, send, unmask
    evtchn_port_t port;  // IN
};

struct evtchn_status {
    domid_t dom;          // IN
    std::uint16_t pad;
    evtchn_port_t port;   // IN
    std::uint32_t status; // OUT: evtchnstat_*
    std::uint32_t vcpu;   // OUT
    union {
        struct {
            domid_t dom;
        } unbound;
        struct {
            domid_t dom;
            std::uint16_t pad;
            evtchn_port_t port;
        } interdomain;
        std::uint32_t pirq;
        std::uint32_t virq;
    } u;                  // OUT
};
static_assert(sizeof(evtchn_status) == 24 && offsetof(evtchn_status, u) == 16);

struct evtchn_bind_vcpu {
    evtchn_port_t port;   // IN
    std::uint32_t vcpu;   // IN
};
struct evtchn_reset {
    domid_t dom;          // IN
};

struct evtchn_init_control {
    std::uint64_t control_gfn; // IN
    std::uint32_t offset;      // IN
    std::uint32_t vcpu;        // IN
    std::uint8_t link_bits;    // OUT
    std::uint8_t pad[7];
};
static_assert(sizeof(evtchn_init_control) == 24 && offsetof(evtchn_init_control, link_bits) == 16);

struct evtchn_expand_array {
    std::uint64_t array_gfn; // IN
};
struct evtchn_set_priority {
    evtchn_port_t port;      // IN
    std::uint32_t priority;  // IN
};

// FIFO ABI. Each port has a 32-bit event word in guest-provided array pages:
//
//   31 30 29 28 27       17 16                 0
//  +--+--+--+--+-----------+--------------------+
//  |P |M |L |B |     -     |  LINK (next port)  |
//  +--+--+--+--+-----------+--------------------+
//   P pending [H set, G clear]   M masked [G]   L linked into a queue [H set, G clear]
//   B busy: the hypervisor is editing LINK
//
// Per vCPU, a control block (in a guest page) has READY (bit q: queue q non-empty) and
// the HEAD port of each of the 16 priority queues (0 highest).
inline constexpr unsigned evtchn_fifo_priority_max = 0;
inline constexpr unsigned evtchn_fifo_priority_default = 7;
inline constexpr unsigned evtchn_fifo_priority_min = 15;
inline constexpr unsigned evtchn_fifo_max_queues = 16;
inline constexpr unsigned evtchn_fifo_link_bits = 17;
inline constexpr std::uint32_t evtchn_fifo_link_mask = (1u << evtchn_fifo_link_bits) - 1;
inline constexpr std::uint32_t evtchn_fifo_pending = 1u << 31;
inline constexpr std::uint32_t evtchn_fifo_masked = 1u << 30;
inline constexpr std::uint32_t evtchn_fifo_linked = 1u << 29;
inline constexpr std::uint32_t evtchn_fifo_busy = 1u << 28;
inline constexpr std::uint32_t evtchn_fifo_words_per_page = page_size / 4;

struct evtchn_fifo_control_block {
    std::uint32_t ready; // [H] set, [G] cleared
    std::uint32_t rsvd;
    std::uint32_t head[evtchn_fifo_max_queues]; // [H] when a queue was empty, [G]
};
static_assert(sizeof(evtchn_fifo_control_block) == 72);

// ---- grant tables ---------------------------------------------------------------------
//
// A v1 grant entry, in table frames the hypervisor owns and the guest maps:
//
//   +0  flags  u16  [G] type + readonly; [H] reading/writing while mapped
//   +2  domid  u16  [G] who may use the grant
//   +4  frame  u32  [G] the guest frame granted
//
// The guest revokes by compare-exchanging {flags, domid} from granted to 0, which fails
// while the hypervisor has GTF_reading/GTF_writing set: the handshake that makes
// "revoke while mapped" impossible for a cooperating guest.
struct grant_entry_v1 {
    std::uint16_t flags;
    domid_t domid;
    std::uint32_t frame;
};
static_assert(sizeof(grant_entry_v1) == 8 && offsetof(grant_entry_v1, frame) == 4);
inline constexpr std::uint32_t grant_entries_per_frame = page_size / sizeof(grant_entry_v1);

inline constexpr std::uint16_t gtf_invalid = 0;
inline constexpr std::uint16_t gtf_permit_access = 1;
inline constexpr std::uint16_t gtf_accept_transfer = 2;
inline constexpr std::uint16_t gtf_transitive = 3;
inline constexpr std::uint16_t gtf_type_mask = 3;
inline constexpr std::uint16_t gtf_readonly = 1u << 2;
inline constexpr std::uint16_t gtf_reading = 1u << 3;
inline constexpr std::uint16_t gtf_writing = 1u << 4;
inline constexpr std::uint16_t gtf_sub_page = 1u << 8;

namespace gnttabop {
inline constexpr unsigned map_grant_ref = 0;
inline constexpr unsigned unmap_grant_ref = 1;
inline constexpr unsigned setup_table = 2;
inline constexpr unsigned dump_table = 3;
inline constexpr unsigned transfer = 4;
inline constexpr unsigned copy = 5;
inline constexpr unsigned query_size = 6;
inline constexpr unsigned unmap_and_replace = 7;
inline constexpr unsigned set_version = 8;
inline constexpr unsigned get_status_frames = 9;
inline constexpr unsigned get_version = 10;
} // namespace gnttabop

inline constexpr std::uint32_t gntmap_device_map = 1u << 0;
inline constexpr std::uint32_t gntmap_host_map = 1u << 1;
inline constexpr std::uint32_t gntmap_readonly = 1u << 2;
inline constexpr std::uint32_t gntmap_application_map = 1u << 3;
inline constexpr std::uint32_t gntmap_contains_pte = 1u << 4;

inline constexpr std::int16_t gntst_okay = 0;
inline constexpr std::int16_t gntst_general_error = -1;
inline constexpr std::int16_t gntst_bad_domain = -2;
inline constexpr std::int16_t gntst_bad_gntref = -3;
inline constexpr std::int16_t gntst_bad_handle = -4;
inline constexpr std::int16_t gntst_bad_virt_addr = -5;
inline constexpr std::int16_t gntst_bad_dev_addr = -6;
inline constexpr std::int16_t gntst_no_device_space = -7;
inline constexpr std::int16_t gntst_permission_denied = -8;
inline constexpr std::int16_t gntst_bad_page = -9;
inline constexpr std::int16_t gntst_bad_copy_arg = -10;
inline constexpr std::int16_t gntst_address_too_big = -11;
inline constexpr std::int16_t gntst_eagain = -12;
inline constexpr std::int16_t gntst_no_space = -13;

struct gnttab_map_grant_ref {
    std::uint64_t host_addr;   // IN: guest-physical address to map at (HVM)
    std::uint32_t flags;       // IN: gntmap_*
    grant_ref_t ref;           // IN
    domid_t dom;               // IN: granting domain
    std::int16_t status;       // OUT: gntst_*
    grant_handle_t handle;     // OUT
    std::uint64_t dev_bus_addr; // OUT
};
static_assert(sizeof(gnttab_map_grant_ref) == 32 && offsetof(gnttab_map_grant_ref, status) == 18 &&
              offsetof(gnttab_map_grant_ref, dev_bus_addr) == 24);

struct gnttab_unmap_grant_ref {
    std::uint64_t host_addr;    // IN
    std::uint64_t dev_bus_addr; // IN
    grant_handle_t handle;      // IN
    std::int16_t status;        // OUT
    std::uint16_t pad;
};
static_assert(sizeof(gnttab_unmap_grant_ref) == 24 && offsetof(gnttab_unmap_grant_ref, status) == 20);

struct gnttab_setup_table {
    domid_t dom;              // IN
    std::uint16_t pad0;
    std::uint32_t nr_frames;  // IN
    std::int16_t status;      // OUT
    std::uint16_t pad1[3];
    std::uint64_t frame_list; // IN: guest pointer to xen_pfn_t[nr_frames], filled OUT
};
static_assert(sizeof(gnttab_setup_table) == 24 && offsetof(gnttab_setup_table, frame_list) == 16);

struct gnttab_setup_table_compat {
    domid_t dom;
    std::uint16_t pad0;
    std::uint32_t nr_frames;
    std::int16_t status;
    std::uint16_t pad1;
    std::uint32_t frame_list; // pointer to uint32_t[nr_frames]
};
static_assert(sizeof(gnttab_setup_table_compat) == 16);

inline constexpr std::uint16_t gntcopy_source_gref = 1u << 0;
inline constexpr std::uint16_t gntcopy_dest_gref = 1u << 1;

struct gnttab_copy_ptr {
    union {
        grant_ref_t ref;
        xen_pfn_t gmfn;
    } u;
    domid_t domid;
    std::uint16_t offset;
    std::uint32_t pad;
};
struct gnttab_copy {
    gnttab_copy_ptr source, dest; // IN
    std::uint16_t len;            // IN
    std::uint16_t flags;          // IN: gntcopy_*
    std::int16_t status;          // OUT
    std::uint16_t pad;
};
static_assert(sizeof(gnttab_copy) == 40 && offsetof(gnttab_copy, dest) == 16 &&
              offsetof(gnttab_copy, len) == 32 && offsetof(gnttab_copy, status) == 36);

struct gnttab_copy_ptr_compat {
    std::uint32_t ref_or_gmfn;
    domid_t domid;
    std::uint16_t offset;
};
struct gnttab_copy_compat {
    gnttab_copy_ptr_compat source, dest;
    std::uint16_t len;
    std::uint16_t flags;
    std::int16_t status;
};
static_assert(sizeof(gnttab_copy_compat) == 24 && offsetof(gnttab_copy_compat, status) == 20);

struct gnttab_query_size {
    domid_t dom;                 // IN
    std::uint16_t pad;
    std::uint32_t nr_frames;     // OUT
    std::uint32_t max_nr_frames; // OUT
    std::int16_t status;         // OUT
    std::uint16_t pad1;
};
static_assert(sizeof(gnttab_query_size) == 16 && offsetof(gnttab_query_size, status) == 12);

struct gnttab_set_version {
    std::uint32_t version; // IN/OUT
};
struct gnttab_get_version {
    domid_t dom;           // IN
    std::uint16_t pad;
    std::uint32_t version; // OUT
};

// ---- block device ring (io/blkif.h) ---------------------------------------------------
inline constexpr std::uint8_t blkif_op_read = 0;
inline constexpr std::uint8_t blkif_op_write = 1;
inline constexpr std::uint8_t blkif_op_write_barrier = 2;
inline constexpr std::uint8_t blkif_op_flush_diskcache = 3;
inline constexpr std::uint8_t blkif_op_discard = 5;
inline constexpr std::uint8_t blkif_op_indirect = 6;
inline constexpr unsigned blkif_max_segments_per_request = 11;
inline constexpr std::int16_t blkif_rsp_eopnotsupp = -2;
inline constexpr std::int16_t blkif_rsp_error = -1;
inline constexpr std::int16_t blkif_rsp_okay = 0;
inline constexpr unsigned blkif_sector_size = 512; // sector numbers are always 512-byte

struct blkif_request_segment {
    grant_ref_t gref;         // frame holding the data
    std::uint8_t first_sect;  // first 512-byte sector within the frame (0..7)
    std::uint8_t last_sect;   // last, inclusive
    std::uint16_t pad;
};
static_assert(sizeof(blkif_request_segment) == 8);

struct blkif_request {
    std::uint8_t operation;      // blkif_op_*
    std::uint8_t nr_segments;
    std::uint16_t handle;        // virtual device
    std::uint32_t pad;
    std::uint64_t id;            // echoed in the response
    std::uint64_t sector_number; // start, in 512-byte sectors
    blkif_request_segment seg[blkif_max_segments_per_request];
};
static_assert(sizeof(blkif_request) == 112 && offsetof(blkif_request, id) == 8 &&
              offsetof(blkif_request, sector_number) == 16 && offsetof(blkif_request, seg) == 24);

struct blkif_response {
    std::uint64_t id;
    std::uint8_t operation;
    std::uint8_t pad0;
    std::int16_t status; // blkif_rsp_*
    std::uint32_t pad1;
};
static_assert(sizeof(blkif_response) == 16 && offsetof(blkif_response, status) == 10);

// ---- console ring (io/console.h) ------------------------------------------------------
struct xencons_interface {
    char in[1024];             // [H] writes, [G] reads
    char out[2048];            // [G] writes, [H] reads
    std::uint32_t in_cons, in_prod;
    std::uint32_t out_cons, out_prod;
};
static_assert(sizeof(xencons_interface) == 3088 && offsetof(xencons_interface, out_cons) == 3080);

} // namespace hv::xen
