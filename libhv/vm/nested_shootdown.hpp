// Nested-table (EPT/NPT) invalidation for a guest whose vCPUs run on several physical
// CPUs. INVEPT and an ASID flush act on the executing CPU only, and a vCPU in guest mode
// keeps using what its CPU's TLB holds until it exits. So:
//
//   change (under the guest's lock, on CPU `here`)     vCPU j on another CPU
//   ─────────────────────────────────────────────      ──────────────────────────────
//   ++generation; this CPU's vCPUs flush now            exited(j): guest mode off, then
//   revoked (a translation or a permission gone):          take the lock
//     kick(cpu of j) for each j in guest mode           entering(j) (under the lock):
//     wait until each of them has exited                  generation stale → flush
//   added (a mapping, a permission): nothing more         guest mode on, release the lock
//
// A revoking change returns only when no CPU can still use the old entry; an adding one
// leaves the stale entry to the next entry's flush (meanwhile it can only cost one more
// nested fault, which finds the page mapped). Portable: the unit tests run it under
// threads; vm::guest runs it with INVEPT / TLB_CONTROL as the flush and rt::smp's kick IPI.
#pragma once
#include <cstdint>

namespace hv::vm {

class nested_shootdown {
public:
    static constexpr unsigned max_vcpus = 8;

    void set_cpu(unsigned vcpu, unsigned cpu) { cpu_[vcpu] = cpu; }
    void set_vcpus(unsigned n) { count_ = n; }

    // Under the lock, after the tables changed on CPU `here`: flush(vcpu) for each vCPU
    // of this CPU; if `revoked`, kick(cpu) for each vCPU in guest mode elsewhere, then
    // relax() until all of those have exited. Returns the kicks sent.
    template <class Flush, class Kick, class Relax>
    unsigned changed(unsigned here, bool revoked, Flush&& flush, Kick&& kick, Relax&& relax) {
        const std::uint64_t g = ++generation_;
        for (unsigned i = 0; i < count_; ++i) {
            if (cpu_[i] != here) continue;
            flush(i);
            flushed_[i] = g;
        }
        if (!revoked) return 0;
        unsigned kicks = 0;
        for (unsigned j = 0; j < count_; ++j) {
            if (cpu_[j] == here || !in_guest_mode(j)) continue;
            kick(cpu_[j]);
            ++kicks;
        }
        for (unsigned j = 0; j < count_; ++j)
            while (cpu_[j] != here && in_guest_mode(j)) relax();
        return kicks;
    }

    // Under the lock, last thing before vCPU i enters guest mode (the lock's release
    // publishes the flag): true when it must flush its nested TLB entries first.
    [[nodiscard]] bool entering(unsigned i) {
        const bool stale = flushed_[i] != generation_;
        flushed_[i] = generation_;
        __atomic_store_n(&guest_mode_[i], true, __ATOMIC_RELAXED);
        return stale;
    }
    // First thing after vCPU i left guest mode, before it takes the lock.
    void exited(unsigned i) { __atomic_store_n(&guest_mode_[i], false, __ATOMIC_RELEASE); }

    [[nodiscard]] bool in_guest_mode(unsigned i) const { return __atomic_load_n(&guest_mode_[i], __ATOMIC_ACQUIRE); }

private:
    unsigned count_ = 0;
    unsigned cpu_[max_vcpus] = {};
    std::uint64_t generation_ = 0;
    std::uint64_t flushed_[max_vcpus] = {};
    bool guest_mode_[max_vcpus] = {};
};

} // namespace hv::vm
