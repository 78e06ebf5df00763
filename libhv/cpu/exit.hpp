// One exit model for both vendors: a reason and its decoded details, built from the raw
// VMX exit fields or the raw VMCB exit fields, so each handler is written once.
// Plus what a vCPU remembers of its exits: counters per reason and a ring of the last ones.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include "libhv/core/format.hpp"

namespace hv::cpu {

enum class vendor : std::uint8_t { vmx, svm };

enum class exit_reason : std::uint8_t {
    cpuid,
    hlt,
    io,
    msr_read,
    msr_write,
    cr_access,
    dr_access,
    npf,                 // EPT violation / nested page fault
    npf_misconfig,       // EPT misconfiguration (VMX only)
    hypercall,           // VMCALL / VMMCALL
    exception,
    nmi,
    external_interrupt,
    interrupt_window,
    nmi_window,
    triple_fault,        // VMX triple fault / SVM shutdown
    invalid_guest_state, // VM entry refused the guest state
    entry_failure,       // VM entry failed while loading MSRs or on a machine check
    entry_refused,       // VMLAUNCH/VMRESUME failed (VMfailValid/Invalid): failure.code = VM-instruction error
    invlpg,
    rdtsc,
    rdtscp,
    rdpmc,
    pause,
    invd,
    wbinvd,
    xsetbv,
    monitor,
    mwait,
    init,
    sipi,
    task_switch,
    preemption_timer,
    descriptor_table,    // SGDT/LGDT/... intercepted
    virtualization,      // the guest executed a VMX or SVM instruction
    smi,
    other,
    count_,
};
inline constexpr std::size_t exit_reason_count = static_cast<std::size_t>(exit_reason::count_);
std::string_view name(exit_reason r);

// An event as both vendors describe it: being injected, or interrupted by the exit.
enum class event_kind : std::uint8_t {
    external_interrupt,
    nmi,
    hardware_exception,
    software_interrupt,             // INT n
    privileged_software_exception,  // INT1 / ICEBP
    software_exception,             // INT3, INTO
};
struct event {
    bool valid = false;
    event_kind kind = event_kind::external_interrupt;
    std::uint8_t vector = 0;
    bool has_error_code = false;
    std::uint32_t error_code = 0;
};

// smsw: SMSW r16/r32/r64, which an SVM CR0 read intercept catches too (QEMU's TCG does;
// decoded by cpu::cr_access_of, never reported by VMX, whose CR0 read shadow answers it).
enum class cr_op : std::uint8_t { write, read, clts, lmsw, smsw };

struct io_detail {
    std::uint16_t port;
    std::uint8_t size;          // 1, 2 or 4
    std::uint8_t address_size;  // 16/32/64 for string I/O, 0 when unknown
    bool in, string, rep;
};
struct msr_detail { std::uint32_t index; };
struct cr_detail {
    std::uint8_t cr;
    cr_op op;
    std::uint8_t gpr;  // 0 = RAX ... 15 = R15
    bool gpr_known;    // SVM without decode assists: the handler must decode the instruction
    std::uint16_t lmsw_source;
    std::uint8_t smsw_bytes = 0;  // smsw: the destination register's width (2, 4 or 8)
};
struct dr_detail {
    std::uint8_t dr;
    bool write;
    std::uint8_t gpr;
    bool gpr_known;
};
struct npf_detail {
    std::uint64_t gpa;
    std::uint64_t gla;
    bool gla_valid;
    bool read, write, fetch;
    bool present;       // the translation existed: a permission fault
    bool page_walk;     // during the guest's own page-table walk
};
struct exception_detail {
    std::uint8_t vector;
    bool has_error_code;
    std::uint32_t error_code;
    std::uint64_t fault_address;  // #PF: the linear address
};
struct cpuid_detail { std::uint32_t leaf, subleaf; };
struct hypercall_detail { std::uint64_t nr; };
struct interrupt_detail {
    std::uint8_t vector;
    bool vector_known;  // VMX acknowledged the interrupt on exit
};
struct failure_detail { std::uint64_t code; };  // VMX exit qualification / SVM exit code

struct exit_info {
    exit_reason reason = exit_reason::other;
    vendor from = vendor::vmx;
    std::uint64_t raw_code = 0;  // VMX exit-reason field or SVM EXITCODE
    std::uint64_t rip = 0;
    std::uint8_t instruction_length = 0;  // 0 when unknown (SVM without NRIPS)
    event interrupted;                    // delivery cut short by this exit: re-inject it
    union {
        io_detail io;
        msr_detail msr;
        cr_detail cr;
        dr_detail dr;
        npf_detail npf;
        exception_detail exception;
        cpuid_detail cpuid;
        hypercall_detail hypercall;
        interrupt_detail interrupt;
        failure_detail failure;
    };
    exit_info() : failure{} {}
};

// Raw exit information as the VMX backend reads it from the VMCS (plus RAX/RCX from the
// saved guest registers, for CPUID leaves, MSR indices and hypercall numbers).
struct vmx_exit_raw {
    std::uint32_t reason;
    std::uint64_t qualification;
    std::uint32_t instruction_length;
    std::uint32_t instruction_info;
    std::uint32_t interruption_info;
    std::uint32_t interruption_error;
    std::uint32_t idt_vectoring_info;
    std::uint32_t idt_vectoring_error;
    std::uint64_t guest_physical;
    std::uint64_t guest_linear;
    std::uint64_t rip;
    std::uint64_t rax, rcx;
};

// Raw exit information from the VMCB.
struct svm_exit_raw {
    std::uint64_t exitcode;
    std::uint64_t exitinfo1, exitinfo2;
    std::uint64_t exitintinfo;
    std::uint64_t next_rip;
    bool nrips;           // next_rip is meaningful
    bool decode_assists;  // CR/DR exits carry the GPR
    std::uint64_t rip;
    std::uint64_t rax, rcx;
};

[[nodiscard]] exit_info decode(const vmx_exit_raw& raw);
[[nodiscard]] exit_info decode(const svm_exit_raw& raw);
// The same into an existing record (the exit path avoids a copy).
void decode(const vmx_exit_raw& raw, exit_info& out);
void decode(const svm_exit_raw& raw, exit_info& out);

// One line (no newline) naming the exit and its details.
void describe(const fmt::sink& out, const exit_info& e);

// Per-vCPU record of exits.
class exit_log {
public:
    static constexpr std::size_t ring_size = 32;

    void record(const exit_info& e) {
        exit_info& s = slot();
        s = e;
        commit(s);
    }
    // The exit path decodes straight into the ring: fill slot(), then commit() it.
    exit_info& slot() {
        return *reinterpret_cast<exit_info*>(reinterpret_cast<char*>(ring_) + (cursor_ & (sizeof ring_ - 1)));
    }
    void commit(const exit_info& filled_slot) { commit(filled_slot.reason); }
    // The same with the slot's reason at hand (a constant on the backends' hot paths).
    void commit(exit_reason filled_reason) {
        ++counts_[static_cast<std::size_t>(filled_reason)];
        cursor_ += sizeof(exit_info);
    }
    std::uint64_t count(exit_reason r) const { return counts_[static_cast<std::size_t>(r)]; }
    std::uint64_t total() const { return cursor_ / sizeof(exit_info); }
    std::size_t retained() const { return total() < ring_size ? static_cast<std::size_t>(total()) : ring_size; }
    // 0 = the most recent exit; i < retained().
    const exit_info& recent(std::size_t i) const { return ring_[(total() - 1 - i) % ring_size]; }
    void clear() { *this = exit_log{}; }

    // Counters (non-zero ones) then the retained exits, oldest first, numbered.
    void print(const fmt::sink& out) const;

private:
    std::uint64_t counts_[exit_reason_count] = {};
    exit_info ring_[ring_size];
    // Exits so far times sizeof(exit_info): the slot's byte offset in its low bits, with
    // no scaling per exit.
    std::uint64_t cursor_ = 0;
    static_assert((sizeof(exit_info) & (sizeof(exit_info) - 1)) == 0 && (ring_size & (ring_size - 1)) == 0);
};

} // namespace hv::cpu
