// The SVM VMCB (AMD APM vol. 2 appendix B), intercept bits, exit codes (appendix C),
// EXITINFO decoders and event injection (APM 15.20). Layout checked field by field.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace hv::svm {

// ---- intercepts (APM table B-1) ----

// Control-area offset 0x00C.
enum class intercept3 : std::uint32_t {
    intr = 1u << 0,
    nmi = 1u << 1,
    smi = 1u << 2,
    init = 1u << 3,
    vintr = 1u << 4,
    cr0_selective_write = 1u << 5,
    idtr_read = 1u << 6,
    gdtr_read = 1u << 7,
    ldtr_read = 1u << 8,
    tr_read = 1u << 9,
    idtr_write = 1u << 10,
    gdtr_write = 1u << 11,
    ldtr_write = 1u << 12,
    tr_write = 1u << 13,
    rdtsc = 1u << 14,
    rdpmc = 1u << 15,
    pushf = 1u << 16,
    popf = 1u << 17,
    cpuid = 1u << 18,
    rsm = 1u << 19,
    iret = 1u << 20,
    intn = 1u << 21,
    invd = 1u << 22,
    pause = 1u << 23,
    hlt = 1u << 24,
    invlpg = 1u << 25,
    invlpga = 1u << 26,
    ioio_prot = 1u << 27,
    msr_prot = 1u << 28,
    task_switch = 1u << 29,
    ferr_freeze = 1u << 30,
    shutdown = 1u << 31,
};
// Control-area offset 0x010.
enum class intercept4 : std::uint32_t {
    vmrun = 1u << 0,
    vmmcall = 1u << 1,
    vmload = 1u << 2,
    vmsave = 1u << 3,
    stgi = 1u << 4,
    clgi = 1u << 5,
    skinit = 1u << 6,
    rdtscp = 1u << 7,
    icebp = 1u << 8,
    wbinvd = 1u << 9,
    monitor = 1u << 10,
    mwait = 1u << 11,
    mwait_armed = 1u << 12,
    xsetbv = 1u << 13,
    rdpru = 1u << 14,
    efer_write_trap = 1u << 15,
};

template <class E>
constexpr std::uint32_t bits(E e) { return static_cast<std::uint32_t>(e); }
template <class E, class... R>
constexpr std::uint32_t bits(E e, R... rest) { return (static_cast<std::uint32_t>(e) | ... | static_cast<std::uint32_t>(rest)); }

// ---- layout ----

// Segment register image (APM table B-2): attributes pack descriptor bits 47:40 into
// 7:0 and bits 55:52 into 11:8.
struct segment {
    std::uint16_t selector;
    std::uint16_t attrib;
    std::uint32_t limit;
    std::uint64_t base;
};
static_assert(sizeof(segment) == 16);

enum class tlb_control : std::uint8_t { none = 0, flush_all = 1, flush_asid = 3, flush_asid_non_global = 7 };

struct control_area {
    std::uint32_t cr_intercepts;          // 0x000: reads 15:0, writes 31:16
    std::uint32_t dr_intercepts;          // 0x004: reads 15:0, writes 31:16
    std::uint32_t exception_intercepts;   // 0x008
    std::uint32_t intercepts3;            // 0x00c
    std::uint32_t intercepts4;            // 0x010
    std::uint32_t intercepts5;            // 0x014
    std::uint8_t reserved_018[0x03c - 0x018];
    std::uint16_t pause_filter_threshold; // 0x03c
    std::uint16_t pause_filter_count;     // 0x03e
    std::uint64_t iopm_base_pa;           // 0x040
    std::uint64_t msrpm_base_pa;          // 0x048
    std::uint64_t tsc_offset;             // 0x050
    std::uint32_t guest_asid;             // 0x058
    tlb_control tlb_ctl;                  // 0x05c
    std::uint8_t reserved_05d[3];
    std::uint64_t vintr;                  // 0x060: V_TPR 7:0, V_IRQ 8, V_INTR_PRIO 19:16, V_IGN_TPR 20, V_INTR_MASKING 24, V_INTR_VECTOR 39:32
    std::uint64_t interrupt_shadow;       // 0x068: bit 0 shadow, bit 1 guest IF (read only)
    std::uint64_t exitcode;               // 0x070
    std::uint64_t exitinfo1;              // 0x078
    std::uint64_t exitinfo2;              // 0x080
    std::uint64_t exitintinfo;            // 0x088
    std::uint64_t np_control;             // 0x090: bit 0 nested paging, 1 SEV, 2 SEV-ES
    std::uint64_t avic_apic_bar;          // 0x098
    std::uint64_t ghcb_pa;                // 0x0a0
    std::uint64_t eventinj;               // 0x0a8
    std::uint64_t n_cr3;                  // 0x0b0
    std::uint64_t virt_ext;               // 0x0b8: bit 0 LBR virtualization, bit 1 virtual VMSAVE/VMLOAD
    std::uint32_t clean_bits;             // 0x0c0
    std::uint32_t reserved_0c4;
    std::uint64_t next_rip;               // 0x0c8 (with NRIPS)
    std::uint8_t bytes_fetched;           // 0x0d0 (with decode assists)
    std::uint8_t guest_bytes[15];         // 0x0d1
    std::uint64_t avic_backing_page;      // 0x0e0
    std::uint64_t reserved_0e8;
    std::uint64_t avic_logical_table;     // 0x0f0
    std::uint64_t avic_physical_table;    // 0x0f8
    std::uint64_t reserved_100;
    std::uint64_t vmsa_pa;                // 0x108
    std::uint8_t reserved_110[0x400 - 0x110];
};

struct state_save_area {
    segment es, cs, ss, ds, fs, gs;   // 0x000 .. 0x05f
    segment gdtr, ldtr, idtr, tr;     // 0x060 .. 0x09f
    std::uint8_t reserved_0a0[0x0cb - 0x0a0];
    std::uint8_t cpl;                 // 0x0cb
    std::uint32_t reserved_0cc;
    std::uint64_t efer;               // 0x0d0
    std::uint8_t reserved_0d8[0x148 - 0x0d8];
    std::uint64_t cr4;                // 0x148
    std::uint64_t cr3;                // 0x150
    std::uint64_t cr0;                // 0x158
    std::uint64_t dr7;                // 0x160
    std::uint64_t dr6;                // 0x168
    std::uint64_t rflags;             // 0x170
    std::uint64_t rip;                // 0x178
    std::uint8_t reserved_180[0x1d8 - 0x180];
    std::uint64_t rsp;                // 0x1d8
    std::uint64_t s_cet;              // 0x1e0
    std::uint64_t ssp;                // 0x1e8
    std::uint64_t isst_addr;          // 0x1f0
    std::uint64_t rax;                // 0x1f8
    std::uint64_t star;               // 0x200
    std::uint64_t lstar;              // 0x208
    std::uint64_t cstar;              // 0x210
    std::uint64_t sfmask;             // 0x218
    std::uint64_t kernel_gs_base;     // 0x220
    std::uint64_t sysenter_cs;        // 0x228
    std::uint64_t sysenter_esp;       // 0x230
    std::uint64_t sysenter_eip;       // 0x238
    std::uint64_t cr2;                // 0x240
    std::uint8_t reserved_248[0x268 - 0x248];
    std::uint64_t g_pat;              // 0x268
    std::uint64_t dbgctl;             // 0x270
    std::uint64_t br_from;            // 0x278
    std::uint64_t br_to;              // 0x280
    std::uint64_t last_excp_from;     // 0x288
    std::uint64_t last_excp_to;       // 0x290
    std::uint8_t reserved_298[0xc00 - 0x298];
};

struct alignas(4096) vmcb {
    control_area control;
    state_save_area state;
};

#define HV_VMCB_AT(s, f, off) static_assert(offsetof(s, f) == (off), #s "." #f " is not at APM offset " #off)
HV_VMCB_AT(control_area, cr_intercepts, 0x000);
HV_VMCB_AT(control_area, dr_intercepts, 0x004);
HV_VMCB_AT(control_area, exception_intercepts, 0x008);
HV_VMCB_AT(control_area, intercepts3, 0x00c);
HV_VMCB_AT(control_area, intercepts4, 0x010);
HV_VMCB_AT(control_area, intercepts5, 0x014);
HV_VMCB_AT(control_area, pause_filter_threshold, 0x03c);
HV_VMCB_AT(control_area, pause_filter_count, 0x03e);
HV_VMCB_AT(control_area, iopm_base_pa, 0x040);
HV_VMCB_AT(control_area, msrpm_base_pa, 0x048);
HV_VMCB_AT(control_area, tsc_offset, 0x050);
HV_VMCB_AT(control_area, guest_asid, 0x058);
HV_VMCB_AT(control_area, tlb_ctl, 0x05c);
HV_VMCB_AT(control_area, vintr, 0x060);
HV_VMCB_AT(control_area, interrupt_shadow, 0x068);
HV_VMCB_AT(control_area, exitcode, 0x070);
HV_VMCB_AT(control_area, exitinfo1, 0x078);
HV_VMCB_AT(control_area, exitinfo2, 0x080);
HV_VMCB_AT(control_area, exitintinfo, 0x088);
HV_VMCB_AT(control_area, np_control, 0x090);
HV_VMCB_AT(control_area, avic_apic_bar, 0x098);
HV_VMCB_AT(control_area, ghcb_pa, 0x0a0);
HV_VMCB_AT(control_area, eventinj, 0x0a8);
HV_VMCB_AT(control_area, n_cr3, 0x0b0);
HV_VMCB_AT(control_area, virt_ext, 0x0b8);
HV_VMCB_AT(control_area, clean_bits, 0x0c0);
HV_VMCB_AT(control_area, next_rip, 0x0c8);
HV_VMCB_AT(control_area, bytes_fetched, 0x0d0);
HV_VMCB_AT(control_area, guest_bytes, 0x0d1);
HV_VMCB_AT(control_area, avic_backing_page, 0x0e0);
HV_VMCB_AT(control_area, avic_logical_table, 0x0f0);
HV_VMCB_AT(control_area, avic_physical_table, 0x0f8);
HV_VMCB_AT(control_area, vmsa_pa, 0x108);
static_assert(sizeof(control_area) == 0x400);

HV_VMCB_AT(state_save_area, es, 0x000);
HV_VMCB_AT(state_save_area, cs, 0x010);
HV_VMCB_AT(state_save_area, ss, 0x020);
HV_VMCB_AT(state_save_area, ds, 0x030);
HV_VMCB_AT(state_save_area, fs, 0x040);
HV_VMCB_AT(state_save_area, gs, 0x050);
HV_VMCB_AT(state_save_area, gdtr, 0x060);
HV_VMCB_AT(state_save_area, ldtr, 0x070);
HV_VMCB_AT(state_save_area, idtr, 0x080);
HV_VMCB_AT(state_save_area, tr, 0x090);
HV_VMCB_AT(state_save_area, cpl, 0x0cb);
HV_VMCB_AT(state_save_area, efer, 0x0d0);
HV_VMCB_AT(state_save_area, cr4, 0x148);
HV_VMCB_AT(state_save_area, cr3, 0x150);
HV_VMCB_AT(state_save_area, cr0, 0x158);
HV_VMCB_AT(state_save_area, dr7, 0x160);
HV_VMCB_AT(state_save_area, dr6, 0x168);
HV_VMCB_AT(state_save_area, rflags, 0x170);
HV_VMCB_AT(state_save_area, rip, 0x178);
HV_VMCB_AT(state_save_area, rsp, 0x1d8);
HV_VMCB_AT(state_save_area, s_cet, 0x1e0);
HV_VMCB_AT(state_save_area, ssp, 0x1e8);
HV_VMCB_AT(state_save_area, isst_addr, 0x1f0);
HV_VMCB_AT(state_save_area, rax, 0x1f8);
HV_VMCB_AT(state_save_area, star, 0x200);
HV_VMCB_AT(state_save_area, lstar, 0x208);
HV_VMCB_AT(state_save_area, cstar, 0x210);
HV_VMCB_AT(state_save_area, sfmask, 0x218);
HV_VMCB_AT(state_save_area, kernel_gs_base, 0x220);
HV_VMCB_AT(state_save_area, sysenter_cs, 0x228);
HV_VMCB_AT(state_save_area, sysenter_esp, 0x230);
HV_VMCB_AT(state_save_area, sysenter_eip, 0x238);
HV_VMCB_AT(state_save_area, cr2, 0x240);
HV_VMCB_AT(state_save_area, g_pat, 0x268);
HV_VMCB_AT(state_save_area, dbgctl, 0x270);
HV_VMCB_AT(state_save_area, br_from, 0x278);
HV_VMCB_AT(state_save_area, br_to, 0x280);
HV_VMCB_AT(state_save_area, last_excp_from, 0x288);
HV_VMCB_AT(state_save_area, last_excp_to, 0x290);
static_assert(offsetof(vmcb, state) == 0x400);
static_assert(sizeof(vmcb) == 0x1000);
#undef HV_VMCB_AT

// VMCB segment attributes <-> the VMX-style access-rights layout (type 3:0, S 4, DPL 6:5,
// P 7, AVL 12, L 13, D/B 14, G 15) that libhv's vendor-neutral segments use.
constexpr std::uint16_t attrib_from_ar(std::uint32_t ar) {
    return static_cast<std::uint16_t>((ar & 0xff) | ((ar >> 4) & 0xf00));
}
constexpr std::uint32_t ar_from_attrib(std::uint16_t a) {
    return (a & 0xffu) | ((a & 0xf00u) << 4);
}

// ---- exit codes (APM appendix C) ----

enum class exit_code : std::uint64_t {
    cr0_read = 0x000,   // + n for CRn, up to 0x00f
    cr0_write = 0x010,  // + n, up to 0x01f
    dr0_read = 0x020,
    dr0_write = 0x030,
    exception0 = 0x040,  // + vector, up to 0x05f
    intr = 0x060,
    nmi = 0x061,
    smi = 0x062,
    init = 0x063,
    vintr = 0x064,
    cr0_selective_write = 0x065,
    idtr_read = 0x066,
    gdtr_read = 0x067,
    ldtr_read = 0x068,
    tr_read = 0x069,
    idtr_write = 0x06a,
    gdtr_write = 0x06b,
    ldtr_write = 0x06c,
    tr_write = 0x06d,
    rdtsc = 0x06e,
    rdpmc = 0x06f,
    pushf = 0x070,
    popf = 0x071,
    cpuid = 0x072,
    rsm = 0x073,
    iret = 0x074,
    swint = 0x075,
    invd = 0x076,
    pause = 0x077,
    hlt = 0x078,
    invlpg = 0x079,
    invlpga = 0x07a,
    ioio = 0x07b,
    msr = 0x07c,
    task_switch = 0x07d,
    ferr_freeze = 0x07e,
    shutdown = 0x07f,
    vmrun = 0x080,
    vmmcall = 0x081,
    vmload = 0x082,
    vmsave = 0x083,
    stgi = 0x084,
    clgi = 0x085,
    skinit = 0x086,
    rdtscp = 0x087,
    icebp = 0x088,
    wbinvd = 0x089,
    monitor = 0x08a,
    mwait = 0x08b,
    mwait_conditional = 0x08c,
    xsetbv = 0x08d,
    rdpru = 0x08e,
    efer_write_trap = 0x08f,
    cr0_write_trap = 0x090,  // + n, up to 0x09f
    invlpgb = 0x0a0,
    invlpgb_illegal = 0x0a1,
    invpcid = 0x0a2,
    mcommit = 0x0a3,
    tlbsync = 0x0a4,
    npf = 0x400,
    avic_incomplete_ipi = 0x401,
    avic_noaccel = 0x402,
    vmgexit = 0x403,
    invalid = ~0ull,  // VMRUN refused the VMCB: invalid guest state
    busy = ~0ull - 1,
};
// A name for any exit code, ranges included ("write CR3", "exception 14").
// Writes into buf when the name is composed; returns a view of buf or of a literal.
std::string_view name(exit_code c, char (&buf)[24]);

// EXITINFO1 of an IOIO intercept (APM 15.10.2). EXITINFO2 holds the next RIP.
struct ioio_info {
    std::uint64_t raw;
    constexpr bool in() const { return raw & 1; }
    constexpr bool string() const { return raw & (1u << 2); }
    constexpr bool rep() const { return raw & (1u << 3); }
    constexpr std::uint8_t size() const {
        return (raw & (1u << 6)) ? 4 : (raw & (1u << 5)) ? 2 : (raw & (1u << 4)) ? 1 : 0;
    }
    constexpr std::uint8_t address_size() const {
        return (raw & (1u << 9)) ? 64 : (raw & (1u << 8)) ? 32 : (raw & (1u << 7)) ? 16 : 0;
    }
    constexpr std::uint8_t segment() const { return (raw >> 10) & 7; }
    constexpr std::uint16_t port() const { return static_cast<std::uint16_t>(raw >> 16); }
};

// EXITINFO1 of a nested page fault (APM 15.25.6): a #PF-style error code plus two
// bits saying whether the fault hit the final translation or a guest page-table walk.
struct npf_info {
    std::uint64_t raw;
    constexpr bool present() const { return raw & (1u << 0); }
    constexpr bool write() const { return raw & (1u << 1); }
    constexpr bool user() const { return raw & (1u << 2); }
    constexpr bool reserved_bit() const { return raw & (1u << 3); }
    constexpr bool fetch() const { return raw & (1u << 4); }
    constexpr bool final_translation() const { return raw & (1ull << 32); }
    constexpr bool page_table_walk() const { return raw & (1ull << 33); }
};

// EXITINFO1 of a MOV CR intercept with decode assists: bit 63 valid, 3:0 the GPR.
struct cr_info {
    std::uint64_t raw;
    constexpr bool valid() const { return raw & (1ull << 63); }
    constexpr std::uint8_t gpr() const { return raw & 0xf; }
};

// EVENTINJ / EXITINTINFO (APM 15.20).
enum class event_type : std::uint8_t { intr = 0, nmi = 2, exception = 3, software_interrupt = 4 };
struct event {
    std::uint64_t raw = 0;
    constexpr std::uint8_t vector() const { return raw & 0xff; }
    constexpr event_type type() const { return static_cast<event_type>((raw >> 8) & 7); }
    constexpr bool error_code_valid() const { return raw & (1u << 11); }
    constexpr bool valid() const { return raw & (1u << 31); }
    // Bits 30:12 are reserved (APM 15.20): set only in a value no CPU wrote (below).
    constexpr bool reserved_bits_clear() const { return (raw & 0x7ffff000u) == 0; }
    constexpr std::uint32_t error_code() const { return static_cast<std::uint32_t>(raw >> 32); }

    static constexpr event make(event_type t, std::uint8_t vector) {
        return {vector | static_cast<std::uint64_t>(t) << 8 | 1ull << 31};
    }
    static constexpr event make(event_type t, std::uint8_t vector, std::uint32_t error_code) {
        return {make(t, vector).raw | 1ull << 11 | static_cast<std::uint64_t>(error_code) << 32};
    }
};

// ---- capabilities (CPUID 0x8000000A, APM 15.4) ----

struct capabilities {
    std::uint8_t revision;
    std::uint32_t asids;
    bool nested_paging;
    bool lbr_virt;
    bool svm_lock;
    bool nrips;
    bool tsc_rate;
    bool vmcb_clean;
    bool flush_by_asid;
    bool decode_assists;
    bool pause_filter;
    bool avic;
    bool vgif;
};
constexpr capabilities decode_leaf(std::uint32_t eax, std::uint32_t ebx, std::uint32_t edx) {
    capabilities c{};
    c.revision = eax & 0xff;
    c.asids = ebx;
    c.nested_paging = edx & (1u << 0);
    c.lbr_virt = edx & (1u << 1);
    c.svm_lock = edx & (1u << 2);
    c.nrips = edx & (1u << 3);
    c.tsc_rate = edx & (1u << 4);
    c.vmcb_clean = edx & (1u << 5);
    c.flush_by_asid = edx & (1u << 6);
    c.decode_assists = edx & (1u << 7);
    c.pause_filter = edx & (1u << 10);
    c.avic = edx & (1u << 13);
    c.vgif = edx & (1u << 16);
    return c;
}

namespace msr {
inline constexpr std::uint32_t efer = 0xc0000080;
inline constexpr std::uint32_t vm_cr = 0xc0010114;
inline constexpr std::uint32_t vm_hsave_pa = 0xc0010117;
} // namespace msr
inline constexpr std::uint64_t vm_cr_lock = 1ull << 3;
inline constexpr std::uint64_t vm_cr_svmdis = 1ull << 4;

// May this CPU run SVM? ext1_ecx is CPUID 0x80000001:ECX (bit 2 SVM); vm_cr is the
// VM_CR MSR value, or nullopt when reading it raised #GP (Bochs), taken as "not disabled".
struct probe_input {
    std::uint32_t ext1_ecx;
    std::uint32_t leaf_eax, leaf_ebx, leaf_edx;
    bool vm_cr_readable;
    std::uint64_t vm_cr;
};
struct probe_result {
    bool usable;
    const char* why_not;  // static string when !usable
    capabilities caps;
};
constexpr probe_result probe(const probe_input& in) {
    if (!(in.ext1_ecx & (1u << 2))) return {false, "CPUID 0x80000001:ECX.SVM is 0", {}};
    auto caps = decode_leaf(in.leaf_eax, in.leaf_ebx, in.leaf_edx);
    if (in.vm_cr_readable && (in.vm_cr & vm_cr_svmdis))
        return {false, (in.vm_cr & vm_cr_lock) ? "SVM disabled by firmware (VM_CR.SVMDIS, locked)"
                                               : "SVM disabled (VM_CR.SVMDIS)", caps};
    if (caps.asids < 2) return {false, "fewer than 2 ASIDs", caps};
    return {true, nullptr, caps};
}

} // namespace hv::svm
