#include "libhv/vm/guest.hpp"
#include <new>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/percpu.hpp"
#include "libhv/cpu/bitmaps.hpp"
#include "libhv/cpu/cr_decode.hpp"
#include "libhv/rt/smp.hpp"

namespace hv::vm {

result<std::uint64_t> zeroed_frames::alloc_page() {
    auto pa = pages_->alloc();
    HV_TRY(pa);
    __builtin_memset(reinterpret_cast<void*>(*pa), 0, mem::page_size);
    return *pa;
}

void zeroed_frames::free_page(std::uint64_t pa) { (void)pages_->free(pa); }

status enable(physical_cpu& pc, cpu::page_alloc_fn alloc) {
    constexpr std::uint32_t cpuid1_ecx_vmx = 1u << 5, ext_ecx_svm = 1u << 2;
    // NPT leaves (and the host's own tables) select memory types through the host PAT.
    if (x86::rdmsr(x86::msr::pat) != mmu::hypervisor_pat_msr())
        return fail(errc::invalid_argument, "host IA32_PAT is not libhv's hypervisor_pat_msr() (libhv/rt writes it at start)");
    if (x86::cpuid(1).ecx & cpuid1_ecx_vmx) {
        pc.vendor = cpu::vendor::vmx;
        return vmx::enable(pc.vmx, alloc);
    }
    if (x86::cpuid(0x80000000).eax >= 0x80000001 && (x86::cpuid(0x80000001).ecx & ext_ecx_svm)) {
        pc.vendor = cpu::vendor::svm;
        return svm::enable(pc.svm, alloc);
    }
    return fail(errc::not_supported, "this CPU has neither VMX (CPUID.1:ECX.5) nor SVM (CPUID.80000001h:ECX.2)");
}

namespace {

mmu::ept_format ept_of(const physical_cpu& pc) {
    mmu::ept_format f;
    f.maxphyaddr = pc.vmx.maxphyaddr;
    f.gbpages = pc.vmx.caps.ept_vpid.pages_1g();
    f.execute_only = pc.vmx.caps.ept_vpid.execute_only();
    return f;
}

// The x86 flush hook is per vCPU; the guest flushes every vCPU after a batch.
// The instruction ran, so its own bytes are fetchable RAM; the n bytes asked for may run
// into a page that is not (a hole, a device): that part stays zero and is never read.
status code_fetch(cpu::vcpu& v, std::uint64_t linear, void* dst, std::size_t n, void*) {
    guest& g = guest::of(v);
    const mmu::guest_paging regs = guest::paging_registers(v);  // no segments needed: `linear` is given
    mmu::gva_cache& walks = g.walks(v);
    auto copy = [&](std::uint64_t la, void* out, std::size_t len) {
        const mmu::gva_result t =
            walks.translate(g.memory(), g.memory().generation(), regs, g.features(), la, {mmu::access_kind::execute});
        const void* p = t.status == mmu::gva_status::ok ? g.memory().host_pointer(t.gpa, false) : nullptr;
        if (p) __builtin_memcpy(out, p, len);
        return p != nullptr;
    };
    const std::size_t in_page = mmu::page_size - (linear & mmu::page_offset_mask);
    const std::size_t first = n < in_page ? n : in_page;
    if (!copy(linear, dst, first)) return fail(errc::fault, "instruction fetch faulted");
    auto* rest = static_cast<char*>(dst) + first;
    if (first < n && !copy(linear + first, rest, n - first)) __builtin_memset(rest, 0, n - first);
    return {};
}

mmu::guest_paging paging_of_state(const cpu::guest_state& st) {
    return {st.cr0, st.cr3, st.cr4, st.efer, st.rflags,
            static_cast<std::uint8_t>(cpu::ar::dpl_of(st[cpu::seg::ss].access))};
}

// Emulated accesses of a shadow-paged guest: every write that lands in a guest page
// table with a shadow drops the shadow entries it replaced (the shadow write-protects
// those tables, so no other write reaches them).
class shadow_write_watch final : public insn::memory {
public:
    shadow_write_watch(linear_memory<host_memory>& mem, guest_ram& ram, shadow_pages& shadow,
                       const mmu::guest_paging& paging, const mmu::paging_features& features)
        : mem_{&mem}, ram_{&ram}, shadow_{&shadow}, paging_{paging}, features_{features} {}

    std::optional<insn::fault> read(std::uint64_t la, void* dst, unsigned n, insn::access_type a) override {
        return mem_->read(la, dst, n, a);
    }
    std::optional<insn::fault> probe(std::uint64_t la, unsigned n, insn::access_type a) override {
        return mem_->probe(la, n, a);
    }
    const std::uint8_t* fetch_pointer(std::uint64_t la, unsigned n) override { return mem_->fetch_pointer(la, n); }
    std::optional<insn::fault> write(std::uint64_t la, const void* src, unsigned n) override {
        if (auto f = mem_->write(la, src, n)) return f;
        mmu::guest_access how{mmu::access_kind::write, false, false};
        for (unsigned done = 0; done < n;) {
            std::uint64_t at = la + done;
            if (paging_.mode() != mmu::paging_mode::four_level) at &= 0xffff'ffff;
            const unsigned in_page = static_cast<unsigned>(mmu::page_size - (at & mmu::page_offset_mask));
            const unsigned len = n - done < in_page ? n - done : in_page;
            const mmu::gva_result t = mmu::translate_gva(*ram_, paging_, features_, at, how);
            if (t.status == mmu::gva_status::ok && shadow_->tracked(t.gpa)) {
                ++written;
                flush = shadow_->guest_table_written(t.gpa, len) || flush;
            }
            done += len;
        }
        return std::nullopt;
    }

    unsigned written = 0;
    bool flush = false;

private:
    linear_memory<host_memory>* mem_;
    guest_ram* ram_;
    shadow_pages* shadow_;
    mmu::guest_paging paging_;
    mmu::paging_features features_;
};

} // namespace

guest::guest(host_memory& host)
    : host_{&host}, ram_{host}, ept_{mmu::ept_format{}, host}, npt_{mmu::npt_format(), host} {}

status guest::init(physical_cpu& pc, const config& cfg, cpu::page_alloc_fn alloc) {
    if (cfg.vcpus == 0 || cfg.vcpus > max_vcpus) return fail(errc::out_of_range, "vCPU count outside 1..8");
    if (cfg.mmu == paging::shadow && cfg.vcpus != 1)
        return fail(errc::not_supported, "shadow paging: one vCPU per guest for now");
    cpu_ = &pc;
    cfg_ = cfg;
    HV_TRY(ram_.init());
    if (pc.vendor == cpu::vendor::vmx) {
        new (&ept_) mmu::page_table<mmu::ept_format, host_memory>{ept_of(pc), *host_};
        HV_TRY(ept_.init());
        nested_root_ = ept_.root();
    } else {
        // 1 GiB NPT leaves only where the CPU has 1 GiB pages (CPUID.80000001h:EDX.26).
        const bool gbpages = x86::cpuid(0x80000001).edx & (1u << 26);
        new (&npt_) mmu::page_table<mmu::x86_64_format, host_memory>{mmu::npt_format(gbpages, pc.svm.maxphyaddr), *host_};
        HV_TRY(npt_.init());
        nested_root_ = npt_.root();
    }
    for (unsigned i = 0; i < cfg.vcpus; ++i) {
        void* stack = alloc(vcpu_stack_bytes / 4096);
        if (!stack) return fail(errc::no_memory, "vCPU stack");
        stacks_[i] = stack;
        const std::uint16_t tag = static_cast<std::uint16_t>(cfg.first_tag + i);
        if (pc.vendor == cpu::vendor::vmx) {
            HV_TRY(vmx::create(vmx_[i], pc.vmx, tag));
            vmx_[i].nested_root = nested_root_;
            vmx_[i].cr8_exiting = cfg.cr8_exits;
            vmx_[i].host_timer_preemption = cfg.host_timer_preemption;
            vcpus_[i].init(i, vmx::ops, &vmx_[i], stack, vcpu_stack_bytes);
        } else {
            HV_TRY(svm::create(svm_[i], pc.svm, tag));
            svm_[i].nested_root = nested_root_;
            vcpus_[i].init(i, svm::ops, &svm_[i], stack, vcpu_stack_bytes);
        }
        vcpus_[i].set_owner(this);
        vcpus_[i].set_code_reader({nullptr, &code_fetch, &store_linear});
        if (cfg.mmu == paging::shadow) {
            if (pc.vendor == cpu::vendor::vmx) vmx_[i].shadow_paging = true;
            else svm_[i].shadow_paging = true;
            constexpr std::size_t pages = (sizeof(shadow_pages) + 4095) / 4096;
            void* at = alloc(pages);
            if (!at) return fail(errc::no_memory, "shadow MMU");
            shadows_[i] = new (at) shadow_pages{ram_, *host_, features()};
        }
    }
    count_ = cfg.vcpus;
    view_.vcpu_count = count_;
    view_.shadow_paging = cfg.mmu == paging::shadow;
    // State the CPU switches on every entry and exit (VMCS guest fields with the EFER
    // save/load controls; the VMCB with VMLOAD/VMSAVE), and the TSC for reading.
    // SVM: EFER writes stay intercepted (EFER.SVME must stay set under the guest).
    // VMX switches neither KERNEL_GS_BASE nor the SYSCALL MSRs: they pass through and
    // keep the guest's values while libhv runs (libhv uses neither).
    constexpr std::uint32_t switched[] = {0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083,
                                          0xc0000084, 0xc0000100, 0xc0000101, 0xc0000102};
    for (std::uint32_t m : switched) pass_through_msr(m, true, true);
    // Shadow paging: EFER stays intercepted (the real one keeps NXE; NXE changes the shadow).
    const bool shadow = cfg.mmu == paging::shadow;
    pass_through_msr(0xc0000080, !shadow, pc.vendor == cpu::vendor::vmx && !shadow);
    pass_through_msr(msr_file::tsc, true, false);
    return {};
}

void guest::pass_through_msr(std::uint32_t msr, bool read, bool write) {
    for (unsigned i = 0; i < count_; ++i) {
        if (cpu_->vendor == cpu::vendor::vmx) {
            std::span<std::uint8_t> map{vmx_[i].msr_bitmap, cpu::vmx_msr_bitmap::size};
            cpu::set_msr_intercept<cpu::vmx_msr_bitmap>(map, msr, cpu::msr_access::read, !read);
            cpu::set_msr_intercept<cpu::vmx_msr_bitmap>(map, msr, cpu::msr_access::write, !write);
        } else {
            std::span<std::uint8_t> map{svm_[i].msrpm, cpu::svm_msrpm::size};
            cpu::set_msr_intercept<cpu::svm_msrpm>(map, msr, cpu::msr_access::read, !read);
            cpu::set_msr_intercept<cpu::svm_msrpm>(map, msr, cpu::msr_access::write, !write);
        }
    }
}

void guest::on_cpuid(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    if (e.cpuid.leaf == cpuid_where_leaf) {
        // Answered on the physical CPU running this vCPU now (handlers run on its fiber).
        const x86::percpu& here = *x86::this_cpu();
        v.state.regs.rax = here.index;
        v.state.regs.rbx = here.apic_id;
        v.state.regs.rcx = v.id();
        v.state.regs.rdx = cpuid_where_signature;
        v.skip();
        return;
    }
    cpu_view view = g.view_;
    view.vcpu_id = v.id();
    view.guest_cr4 = v.ops().read_cr(v, 4);
    const auto h = x86::cpuid(e.cpuid.leaf, e.cpuid.subleaf);
    const cpuid_regs r = filter_cpuid(e.cpuid.leaf, e.cpuid.subleaf, {h.eax, h.ebx, h.ecx, h.edx}, view);
    v.state.regs.rax = r.eax;
    v.state.regs.rbx = r.ebx;
    v.state.regs.rcx = r.ecx;
    v.state.regs.rdx = r.edx;
    v.skip();
}

// XSETBV always exits on VMX and is intercepted on SVM. XCR0 is per vCPU: the value goes
// to state.xcr0 and the backend loads it before the next entry (cpu::load_xcr0).
void guest::on_xsetbv(cpu::vcpu& v, const cpu::exit_info&) {
    const auto supported = x86::cpuid(0xd, 0);
    const std::uint64_t value = (v.state.regs.rdx << 32) | static_cast<std::uint32_t>(v.state.regs.rax);
    const bool osxsave = (v.ops().read_cr(v, 4) & x86::cr4::osxsave) != 0;
    if (!osxsave) {
        v.inject_exception(6);
        return;
    }
    if (static_cast<std::uint32_t>(v.state.regs.rcx) != 0 ||
        !valid_xcr0(value, (std::uint64_t{supported.edx} << 32) | supported.eax)) {
        v.inject_exception(13, 0);
        return;
    }
    v.state.xcr0 = value;
    v.mark_dirty(cpu::vcpu::dirty_xcr0);
    v.skip();
}

void guest::on_msr_read(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    std::optional<std::uint64_t> value;
    if (e.msr.index == 0xc0000080 && g.cfg_.mmu == paging::shadow)
        value = v.state.efer;  // the guest's view, kept by the backend
    else if (e.msr.index == 0xc0000080 && g.cpu_->vendor == cpu::vendor::svm)
        value = g.svm_[v.id()].block->state.efer & ~x86::efer::svme;
    else
        value = g.msrs_[v.id()].read(e.msr.index);
    if (!value) {
        v.inject_exception(13, 0);
        return;
    }
    v.state.regs.rax = static_cast<std::uint32_t>(*value);
    v.state.regs.rdx = *value >> 32;
    v.skip();
}

void guest::on_msr_write(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    const std::uint64_t value = (v.state.regs.rdx << 32) | static_cast<std::uint32_t>(v.state.regs.rax);
    bool ok;
    if (e.msr.index == 0xc0000080 && g.cfg_.mmu == paging::shadow) {
        constexpr std::uint64_t writable = x86::efer::sce | x86::efer::lme | x86::efer::nxe;
        const std::uint64_t old = v.state.efer;
        const bool paging = v.ops().read_cr(v, 0) & x86::cr0::pg;
        ok = !(value & ~(writable | x86::efer::lma)) && !(paging && ((value ^ old) & x86::efer::lme));
        if (ok) ok = v.ops().write_efer(v, (old & ~writable) | (value & writable)).ok();
        if (ok && ((v.state.efer ^ old) & x86::efer::nxe)) {
            if (auto st = g.sync_shadow(v, v.ops().read_cr(v, 3), cpu::tlb_flush::all); !st) {
                v.fail(st.err().what);
                return;
            }
        }
    } else if (e.msr.index == 0xc0000080 && g.cpu_->vendor == cpu::vendor::svm) {
        // SCE, LME, NXE, SVME... as the guest writes them; LMA is the CPU's; SVME stays set.
        constexpr std::uint64_t writable = x86::efer::sce | x86::efer::lme | x86::efer::nxe;
        std::uint64_t& efer = g.svm_[v.id()].block->state.efer;
        ok = !(value & ~(writable | x86::efer::lma | x86::efer::svme));
        if (ok) efer = (efer & ~writable) | (value & writable) | x86::efer::svme;
        if (ok) v.state.efer = efer & ~x86::efer::svme;
    } else {
        ok = g.msrs_[v.id()].write(e.msr.index, value);
    }
    if (!ok) {
        v.inject_exception(13, 0);
        return;
    }
    v.skip();
}

status guest::add_mmio(std::uint64_t gpa, std::uint64_t size, const mmio_handler& h) {
    if (device_count_ == max_devices) return fail(errc::no_memory, "too many MMIO devices");
    HV_TRY(ram_.add_mmio(gpa, size, device_count_));
    devices_[device_count_++] = h;
    return {};
}

status guest::map_nested(std::uint64_t gpa, std::uint64_t hpa, std::uint64_t size, bool writable) {
    const mmu::page_attrs a = mmu::nested_attrs(writable);
    if (cpu_->vendor == cpu::vendor::vmx) {
        auto tx = ept_.begin();
        return tx.map(gpa, hpa, size, a);
    }
    auto tx = npt_.begin();
    return tx.map(gpa, hpa, size, a);
}

status guest::map_now(std::uint64_t gpa, std::uint64_t size) {
    if (cfg_.mmu == paging::shadow || !cfg_.map_on_demand || size == 0) return {};
    for (std::uint64_t page = gpa & ~std::uint64_t{mmu::page_offset_mask}; page <= gpa + (size - 1); page += mmu::page_size) {
        const mmu::nested_resolution res = ram_.resolve_nested_fault(page, mmu::access_kind::read);
        if (res.action != mmu::nested_action::map) return fail(errc::fault, "map_now: not RAM or ROM with a backing page");
        HV_TRY(map_nested(res.gpa, res.hpa, res.size, res.attrs.write && !is_write_protected(res.gpa)));
    }
    return {};
}

bool guest::is_write_protected(std::uint64_t gpa) const {
    for (unsigned i = 0; i < protected_count_; ++i)
        if (protected_[i].first <= gpa && gpa <= protected_[i].last) return true;
    return false;
}

void guest::nested_changed(nested_change c) {
    if (!spread_) {
        for (unsigned i = 0; i < count_; ++i) vcpus_[i].ops().flush_nested(vcpus_[i]);
        return;
    }
    // Under the big lock.
    stats_.shootdown_kicks += shootdown_.changed(
        x86::this_cpu_index(), c == nested_change::revoked, [&](unsigned i) { vcpus_[i].ops().flush_nested(vcpus_[i]); },
        [](unsigned cpu) { rt::smp::kick(cpu); }, [] { x86::pause(); });
}

status guest::write_protect(std::uint64_t gpa, std::uint64_t size, bool protect) {
    if (!mmu::page_aligned(gpa) || !mmu::page_aligned(size) || size == 0)
        return fail(errc::invalid_argument, "write_protect range not page aligned");
    for (std::uint64_t at = gpa; at < gpa + size; at += mmu::page_size) {
        const mmu::guest_region* r = ram_.find(at);
        if (!r || r->kind != mmu::region_kind::ram) return fail(errc::invalid_argument, "write_protect outside RAM");
    }
    const mmu::address_range range{gpa, gpa + size - 1};
    if (protect) {
        if (protected_count_ == max_protected) return fail(errc::no_memory, "too many write-protected ranges");
        protected_[protected_count_++] = range;
    } else {
        unsigned kept = 0;
        for (unsigned i = 0; i < protected_count_; ++i)
            if (!(protected_[i] == range)) protected_[kept++] = protected_[i];
        protected_count_ = kept;
    }
    return apply_protection(gpa, size, protect);
}

status guest::apply_protection(std::uint64_t gpa, std::uint64_t size, bool protect) {
    // Pages not yet mapped pick up the protection when they fault in.
    const mmu::page_attrs a = mmu::nested_attrs(!protect);
    status s;
    for (std::uint64_t at = gpa; at < gpa + size && s.ok(); at += mmu::page_size) {
        const bool mapped = cpu_->vendor == cpu::vendor::vmx ? ept_.translate(at).has_value() : npt_.translate(at).has_value();
        if (!mapped) continue;
        if (cpu_->vendor == cpu::vendor::vmx) {
            auto tx = ept_.begin();
            s = tx.protect(at, mmu::page_size, a);
        } else {
            auto tx = npt_.begin();
            s = tx.protect(at, mmu::page_size, a);
        }
    }
    nested_changed(protect ? nested_change::revoked : nested_change::added);
    return s;
}

const guest::placed_page* guest::placed_at(std::uint64_t gpa) const {
    const std::uint64_t page = gpa & ~mmu::page_offset_mask;
    for (unsigned i = 0; i < placed_count_; ++i)
        if (placed_[i].gpa == page) return &placed_[i];
    return nullptr;
}

status guest::place_page(std::uint64_t gpa, std::uint64_t hpa, bool writable) {
    if (!cpu_) return fail(errc::invalid_argument, "place_page before init");
    if (!mmu::page_aligned(gpa) || !mmu::page_aligned(hpa)) return fail(errc::invalid_argument, "place_page: unaligned");
    auto* slot = const_cast<placed_page*>(placed_at(gpa));
    if (!slot && placed_count_ == max_placed) return fail(errc::no_memory, "place_page: too many placed pages");
    HV_TRY(map_nested(gpa, hpa, mmu::page_size, writable));
    if (!slot) slot = &placed_[placed_count_++];
    *slot = {gpa, hpa, writable};
    ++placements_;
    nested_changed(nested_change::revoked);
    return {};
}

status guest::restore_page(std::uint64_t gpa) {
    const placed_page* p = placed_at(gpa);
    if (!p) return fail(errc::not_found, "restore_page: nothing placed there");
    const std::uint64_t page = p->gpa;
    status s;
    const mmu::guest_region* r = ram_.find(page);
    if (r && r->kind != mmu::region_kind::mmio) {
        s = map_nested(page, *ram_.backing(page), mmu::page_size, r->kind == mmu::region_kind::ram && !is_write_protected(page));
    } else if (cpu_->vendor == cpu::vendor::vmx) {
        auto tx = ept_.begin();
        s = tx.unmap(page, mmu::page_size);
    } else {
        auto tx = npt_.begin();
        s = tx.unmap(page, mmu::page_size);
    }
    HV_TRY(s);
    placed_[p - placed_] = placed_[--placed_count_];
    ++placements_;
    nested_changed(nested_change::revoked);
    return {};
}

void* guest::host_pointer(std::uint64_t gpa, bool for_write) const {
    if (const placed_page* p = placed_count_ ? placed_at(gpa) : nullptr) {
        if (for_write && !p->writable) return nullptr;
        return host_->host_pointer(p->hpa + (gpa & mmu::page_offset_mask), for_write);
    }
    return ram_.host_pointer(gpa, for_write);
}

std::size_t guest::nested_table_pages() const {
    return cpu_->vendor == cpu::vendor::vmx ? ept_.table_pages() : npt_.table_pages();
}

status guest::start() {
    if (!cpu_) return fail(errc::invalid_argument, "guest::start before init");
    if (!cfg_.map_on_demand) {
        if (cpu_->vendor == cpu::vendor::vmx) {
            auto tx = ept_.begin();
            HV_TRY(ram_.map_nested(tx));
        } else {
            auto tx = npt_.begin();
            HV_TRY(ram_.map_nested(tx));
        }
        for (unsigned i = 0; i < protected_count_; ++i)
            HV_TRY(apply_protection(protected_[i].first, protected_[i].last - protected_[i].first + 1, true));
    }
    for (unsigned i = 0; i < count_; ++i) {
        cpu::vcpu& v = vcpus_[i];
        v.on(cpu::exit_reason::io, &on_io);
        v.on(cpu::exit_reason::cpuid, &on_cpuid);
        v.on(cpu::exit_reason::xsetbv, &on_xsetbv);
        v.on(cpu::exit_reason::msr_read, &on_msr_read);
        v.on(cpu::exit_reason::msr_write, &on_msr_write);
        if (spread_) v.on(cpu::exit_reason::external_interrupt, &spread_external_interrupt);
        if (cfg_.mmu == paging::nested) {
            v.on(cpu::exit_reason::npf, &on_npf);
            continue;
        }
        v.on(cpu::exit_reason::exception, &on_shadow_pf);
        v.on(cpu::exit_reason::cr_access, &on_shadow_cr);
        v.on(cpu::exit_reason::invlpg, &on_shadow_invlpg);
    }
    return {};
}

// ---- several physical CPUs ----

status guest::place(std::span<physical_cpu> cpus, std::span<const unsigned> placement) {
    if (!cpu_) return fail(errc::invalid_argument, "guest::place before init");
    if (placement.size() < count_) return fail(errc::invalid_argument, "placement: fewer entries than vCPUs");
    if (cfg_.mmu == paging::shadow) return fail(errc::not_supported, "placement: shadow-paged guests have one vCPU");
    bool spread = false;
    for (unsigned i = 0; i < count_; ++i) {
        if (placement[i] >= cpus.size()) return fail(errc::out_of_range, "placement: no such physical CPU");
        physical_cpu& pc = cpus[placement[i]];
        if (pc.vendor != cpu_->vendor) return fail(errc::not_supported, "placement: CPUs of different vendors");
        pcpu_[i] = placement[i];
        shootdown_.set_cpu(i, placement[i]);
        spread = spread || placement[i] != placement[0];
        if (pc.vendor == cpu::vendor::vmx) vmx_[i].cpu = &pc.vmx;
        else svm_[i].cpu = &pc.svm;
    }
    spread_ = spread;
    shootdown_.set_vcpus(count_);
    if (!spread_) return {};
    // The same backend, guarded: the big lock is held from each exit until the next entry.
    spread_guard_ = {this, &spread_after_exit, &spread_before_entry};
    for (unsigned i = 0; i < count_; ++i) vcpus_[i].set_exit_guard(&spread_guard_);
    return {};
}

void guest::spread_before_entry(cpu::vcpu& v, void* ctx) {
    guest& g = *static_cast<guest*>(ctx);
    const unsigned i = v.id();
    if (g.shootdown_.entering(i)) [[unlikely]] {
        v.ops().flush_nested(v);  // on this vCPU's own CPU, which is the one that counts
        ++g.stats_.remote_flushes;
    }
    g.in_guest_[i] = true;
    g.kick_others(g.pcpu_[i]);
    g.big_lock_.unlock();
}

void guest::spread_after_exit(cpu::vcpu& v, void* ctx) {
    guest& g = *static_cast<guest*>(ctx);
    const unsigned i = v.id();
    g.shootdown_.exited(i);
    g.big_lock_.lock();
    g.in_guest_[i] = false;
    g.kicked_[i] = false;
    if (g.exit_hook_.fn) g.exit_hook_.fn(v, g.exit_hook_.ctx);
}

// A kick IPI (or any host interrupt) made the exit: take it now (its handler ends it at
// the local APIC), else it stays pending and every entry would exit again at once.
// A kick also means something changed for this CPU (an event, a SIPI, a stop): back to
// the scheduler, as for any host interrupt.
void guest::spread_external_interrupt(cpu::vcpu& v, const cpu::exit_info&) {
    rt::smp::take_pending_interrupts();
    v.request_return();
}

void guest::kick_others(unsigned pcpu) {
    for (unsigned j = 0; j < count_; ++j) {
        if (pcpu_[j] == pcpu) {
            kicked_[j] = false;
            continue;
        }
        cpu::vcpu& w = vcpus_[j];
        if (kicked_[j] || w.finished()) continue;
        const cpu::interrupt_source& src = w.current_interrupt_source();
        const bool need = in_guest_[j] ? w.status() != cpu::vcpu_status::runnable || !w.events.empty() ||
                                             (src.pending && src.pending(src.ctx))
                                       : !w.sleeping();
        if (!need) continue;
        kicked_[j] = true;
        rt::smp::kick(pcpu_[j]);
    }
}

bool guest::runnable_on(unsigned pcpu) const {
    for (unsigned j = 0; j < count_; ++j)
        if (pcpu_[j] == pcpu && !vcpus_[j].finished() && !vcpus_[j].sleeping()) return true;
    return false;
}

status guest::schedule_on(std::span<cpu::scheduler> per_pcpu) {
    for (unsigned i = 0; i < count_; ++i) {
        if (pcpu_[i] >= per_pcpu.size()) return fail(errc::out_of_range, "schedule_on: no scheduler for a vCPU's CPU");
        HV_TRY(per_pcpu[pcpu_[i]].add(vcpus_[i]));
    }
    if (spread_)
        for (auto& s : per_pcpu) s.set_lock(&big_lock_);
    return {};
}

void guest::stop_all(const char* why) {
    for (unsigned i = 0; i < count_; ++i)
        if (vcpus_[i].status() == cpu::vcpu_status::runnable || vcpus_[i].status() == cpu::vcpu_status::halted)
            vcpus_[i].stop(why);
}

namespace {
std::uint32_t open_bus_in(void*, std::uint16_t, std::uint8_t size) { return size == 4 ? ~0u : (1u << (8 * size)) - 1; }
void open_bus_out(void*, std::uint16_t, std::uint8_t, std::uint32_t) {}
constexpr cpu::io_ports open_bus{nullptr, &open_bus_in, &open_bus_out};

// INS/OUTS, out of line: its frame stays off the IN/OUT path.
[[gnu::noinline]] void string_io(cpu::vcpu& v, const cpu::exit_info& e, guest& g, const cpu::io_ports& ports) {
    (void)g.paging_of(v);
    // Outside 64-bit code DS and ES limits apply: the whole segment state.
    const bool code64 = (v.state.efer & x86::efer::lma) && (v.state[cpu::seg::cs].access & cpu::ar::l);
    if (!code64) v.ops().load_state(v);
    const cpu::io_segments segs = cpu::segments_of(v.state);
    linear_memory<host_memory> mem = g.linear(v);
    using lm = linear_memory<host_memory>;
    const cpu::guest_memory memory{
        &mem,
        [](void* m, std::uint64_t la, void* dst, std::size_t n) {
            return !static_cast<lm*>(m)->read(la, dst, static_cast<unsigned>(n), insn::access_type::read);
        },
        [](void* m, std::uint64_t la, const void* src, std::size_t n) {
            return !static_cast<lm*>(m)->write(la, src, static_cast<unsigned>(n));
        },
        [](void* m, std::uint64_t la, bool write) {
            return static_cast<lm*>(m)->host_at(la, write ? insn::access_type::write : insn::access_type::read);
        }};
    // At most 1024 elements per exit, so interrupts wait at most ~0.2 M ticks (a port
    // without bursts: ~160 per element; through a device page ~600): an IDE sector (256
    // words, one burst) still takes one exit, a longer string one more exit (~800 ticks)
    // per 1024 elements. The rest resumes at the same RIP, after any interrupt due.
    auto r = cpu::emulate_io(v.state, e.io, ports, memory, segs, 1024);
    if (!r) {
        v.inject_exception(13, 0);  // a string access the guest's paging refuses
        return;
    }
    v.mark_dirty(cpu::vcpu::dirty_rflags);
    if (r->remaining == 0) v.skip();
}
} // namespace

void guest::on_io(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    const cpu::io_ports& ports = g.ports_.in ? g.ports_ : open_bus;
    if (e.io.string) return string_io(v, e, g, ports);
    // IN/OUT: RAX, no guest memory.
    if (cpu::emulate_io(v.state, e.io, ports, {}).ok()) v.skip();
    else v.inject_exception(13, 0);
}

status guest::schedule_on(cpu::scheduler& s) {
    for (unsigned i = 0; i < count_; ++i) {
        if (cfg_.mmu == paging::shadow) {
            cpu::vcpu& v = vcpus_[i];
            const cpu::guest_state& st = v.state;
            auto root = shadows_[i]->set_guest_paging(st.cr0, st.cr3, st.cr4, st.efer);
            HV_TRY(root);
            (void)shadows_[i]->take_tlb_flush();  // nothing ran yet
            v.ops().set_paging_root(v, st.cr3, *root);
        }
        HV_TRY(s.add(vcpus_[i]));
    }
    return {};
}

// ---- shadow paging ----

void guest::shadow_flush(cpu::vcpu& v, cpu::tlb_flush what, std::uint64_t linear) {
    if (what == cpu::tlb_flush::all) ++shadow_stats_.flushes;
    v.ops().flush_tlb(v, what, linear);
}

status guest::sync_shadow(cpu::vcpu& v, std::uint64_t cr3, cpu::tlb_flush at_least) {
    const cpu::backend_ops& ops = v.ops();
    shadow_pages& s = *shadows_[v.id()];
    auto root = s.set_guest_paging(ops.read_cr(v, 0), cr3, ops.read_cr(v, 4), v.state.efer);
    HV_TRY(root);
    ops.set_paging_root(v, cr3, *root);
    shadow_flush(v, s.take_tlb_flush() ? cpu::tlb_flush::all : at_least);
    return {};
}

void guest::on_shadow_pf(cpu::vcpu& v, const cpu::exit_info& e) {
    if (e.exception.vector != 14) return cpu::default_handler::exception(v, e);
    guest& g = of(v);
    shadow_pages& s = *g.shadows_[v.id()];
    // The MMU keeps CR0/CR3/CR4/EFER; it needs only the CPL (SS.DPL) and RFLAGS (on every exit).
    v.ops().load_mode(v);
    const auto cpl = static_cast<std::uint8_t>(cpu::ar::dpl_of(v.state[cpu::seg::ss].access));
    const std::uint64_t gva = e.exception.fault_address;
    const mmu::pf_result r = s.handle_page_fault(gva, e.exception.error_code, cpl, v.state.rflags);
    if (r.flush_tlb) g.shadow_flush(v, cpu::tlb_flush::all);
    switch (r.outcome) {
    case mmu::pf_outcome::fixed: ++g.shadow_stats_.fills; return;
    case mmu::pf_outcome::inject: {
        ++g.shadow_stats_.injected;
        v.state.cr2 = gva;
        v.mark_dirty(cpu::vcpu::dirty_cr2);
        // A #PF while delivering an event (the run loop requeued it): the #PF goes first;
        // while delivering #PF or a contributory exception it becomes #DF (SDM table 6-5).
        const cpu::event ev = e.interrupted;
        if (ev.valid) v.events.requeue({});
        constexpr std::uint32_t contributory = 1u << 0 | 1u << 10 | 1u << 11 | 1u << 12 | 1u << 13 | 1u << 14;
        if (ev.valid && ev.kind == cpu::event_kind::hardware_exception && ev.vector < 32 &&
            (contributory >> ev.vector & 1)) {
            v.inject_exception(8, 0);
            return;
        }
        v.inject_exception(14, r.error_code);
        if (ev.valid && ev.kind == cpu::event_kind::external_interrupt) v.inject_interrupt(ev.vector);
        if (ev.valid && ev.kind == cpu::event_kind::nmi) v.inject_nmi();
        return;
    }
    case mmu::pf_outcome::tracked_table_write: {
        // A write to a guest table the current address space has not walked since the
        // last CR3 load (another space's, being built or torn down), or a second write
        // in a row to one table, stops shadowing that table rather than emulating every
        // store: the write is retried natively and the table is shadowed again when a
        // walk next needs it.
        ++g.shadow_stats_.table_writes;
        write_streak& w = g.streak_[v.id()];
        const std::uint64_t frame = r.gpa & ~mmu::page_offset_mask;
        w.count = w.frame == frame ? w.count + 1 : 1;
        w.frame = frame;
        const bool idle = !s.used_since_switch(r.gpa);
        if (w.count < 2 && !idle) break;
        const auto flush = s.unshadow(r.gpa, idle);
        if (!flush) break;  // the current root: keep emulating
        w = {};
        ++g.shadow_stats_.unshadowed;
        if (*flush) g.shadow_flush(v, cpu::tlb_flush::all);
        const mmu::pf_result again = s.map_unshadowed_write();
        if (again.flush_tlb) g.shadow_flush(v, cpu::tlb_flush::all);
        if (again.outcome == mmu::pf_outcome::fixed) return;
        break;  // the page also holds another shadowed table: emulate
    }
    case mmu::pf_outcome::emulate_write: ++g.shadow_stats_.wp0_writes; break;
    case mmu::pf_outcome::mmio:
        if (e.exception.error_code & mmu::pf_error::fetch) {
            v.fail("instruction fetch from guest-physical memory that is not RAM");
            return;
        }
        ++g.shadow_stats_.mmio;
        break;
    case mmu::pf_outcome::unhandled: v.fail("shadow paging: guest page table outside RAM"); return;
    }
    g.emulate(v);
}

// MOV to/from CR, CLTS, LMSW at RIP, for SVM exits without decode assists.
bool guest::decode_cr_access(cpu::vcpu& v, cpu::cr_detail& out) {
    guest& g = *this;
    const cpu::guest_state& st = v.state;
    std::uint8_t bytes[insn::max_length];
    const std::uint32_t cs = st[cpu::seg::cs].access;
    const bool code64 = (st.efer & x86::efer::lma) && (cs & cpu::ar::l);
    const std::uint64_t rip = (code64 ? 0 : st[cpu::seg::cs].base) + st.rip;
    unsigned n = insn::max_length;
    // The instruction just ran, so the shadow normally maps it: read it from there
    // (cheaper than the guest walk) unless it may cross a page.
    const auto hpa = (rip & mmu::page_offset_mask) <= mmu::page_size - n ? g.shadow(v.id()).mapped(rip) : std::nullopt;
    if (hpa) {
        __builtin_memcpy(bytes, g.host_->host_pointer(*hpa, false), n);
    } else {
        // Fetch what the page holds up to 15 bytes (an instruction may end near a boundary).
        auto mem = g.linear(v);
        while (n > 0 && mem.read(rip, bytes, n, insn::access_type::fetch)) --n;
    }
    const insn::mode m = code64                                        ? insn::mode::code64
                         : (cs & cpu::ar::db)                           ? insn::mode::code32
                                                                        : insn::mode::code16;
    auto d = insn::decode({bytes, n}, m);
    if (!d) return false;
    return cpu::cr_access_of(*d, out);
}


void guest::on_shadow_cr(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    const cpu::backend_ops& ops = v.ops();
    cpu::cr_detail c = e.cr;
    if (!c.gpr_known && c.op != cpu::cr_op::clts && c.op != cpu::cr_op::lmsw) {
        (void)g.paging_of(v);
        if (!g.decode_cr_access(v, c) || c.cr != e.cr.cr) return cpu::default_handler::unhandled(v, e);
    }
    if (c.cr != 0 && c.cr != 3 && c.cr != 4) return cpu::default_handler::unhandled(v, e);
    if (c.op == cpu::cr_op::smsw) {  // the guest's CR0 (its PE clear in real mode), in the register's width
        std::uint64_t& r = v.state.regs[c.gpr];
        const std::uint64_t cr0 = ops.read_cr(v, 0);
        r = c.smsw_bytes == 2 ? (r & ~0xffffull) | (cr0 & 0xffff) : c.smsw_bytes == 4 ? cr0 & 0xffffffff : cr0;
        if (c.gpr == 4) v.mark_dirty(cpu::vcpu::dirty_rsp);
        v.skip();
        return;
    }
    if (c.op == cpu::cr_op::read) {
        v.state.regs[c.gpr] = ops.read_cr(v, c.cr);
        if (c.gpr == 4) v.mark_dirty(cpu::vcpu::dirty_rsp);
        v.skip();
        return;
    }
    if (c.cr == 3) {
        const std::uint64_t value = v.state.regs[c.gpr];
        if (value >> g.features().maxphyaddr) {
            v.inject_exception(13, 0);
            return;
        }
        ++g.shadow_stats_.cr3_writes;
        if (auto st = g.sync_shadow(v, value, cpu::tlb_flush::non_global); !st) {
            v.fail(st.err().what);
            return;
        }
        v.skip();
        return;
    }
    // CR0/CR4 (also CLTS, LMSW): the default handler checks and writes them; a paging bit
    // that changed changes how the shadow must be built and what the TLB may keep.
    const std::uint64_t cr0 = ops.read_cr(v, 0), cr4 = ops.read_cr(v, 4), efer = v.state.efer;
    const std::uint64_t rip = v.state.rip;
    cpu::exit_info decoded = e;
    decoded.cr = c;
    cpu::default_handler::cr_access(v, decoded);
    if (v.state.rip == rip && v.status() == cpu::vcpu_status::runnable) return;  // #GP injected
    const std::uint64_t paging0 = x86::cr0::pg | x86::cr0::wp | x86::cr0::pe;
    const std::uint64_t paging4 = x86::cr4::pse | x86::cr4::pae | x86::cr4::pge | x86::cr4::smep | x86::cr4::smap;
    if (((ops.read_cr(v, 0) ^ cr0) & paging0) || ((ops.read_cr(v, 4) ^ cr4) & paging4) || v.state.efer != efer) {
        if (auto st = g.sync_shadow(v, ops.read_cr(v, 3), cpu::tlb_flush::all); !st) v.fail(st.err().what);
    }
}

void guest::on_shadow_invlpg(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    ++g.shadow_stats_.invlpg;
    if (e.npf.gla_valid) {
        g.shadows_[v.id()]->invlpg(e.npf.gla);
        v.ops().flush_tlb(v, cpu::tlb_flush::address, e.npf.gla);
    } else {
        v.ops().flush_tlb(v, cpu::tlb_flush::all, 0);  // SVM without decode assists: no address
    }
    v.skip();
}

mmu::guest_paging guest::paging_of(cpu::vcpu& v) {
    if (v.ops().load_memory_state) v.ops().load_memory_state(v);
    else v.ops().load_state(v);
    return paging_of_state(v.state);
}

mmu::guest_paging guest::paging_registers(cpu::vcpu& v) {
    const cpu::backend_ops& ops = v.ops();
    if (ops.load_paging_state) {
        ops.load_paging_state(v);
        return paging_of_state(v.state);
    }
    if (!ops.load_mode) {
        ops.load_state(v);
        return paging_of_state(v.state);
    }
    ops.load_mode(v);
    v.load_flags();  // RFLAGS.AC (SMAP)
    const cpu::guest_state& st = v.state;
    return {ops.read_cr(v, 0), ops.read_cr(v, 3), ops.read_cr(v, 4), st.efer, st.rflags,
            static_cast<std::uint8_t>(cpu::ar::dpl_of(st[cpu::seg::ss].access))};
}

linear_memory<host_memory> guest::linear(cpu::vcpu& v) { return linear(v, paging_of_state(v.state)); }

linear_memory<host_memory> guest::linear(cpu::vcpu& v, const mmu::guest_paging& paging) {
    return {ram_, paging, features(), {devices_, device_count_}, strays_, &translations_[v.id()], &last_device_[v.id()]};
}

// Under shadow paging every emulated write is watched for the guest's page tables.
hv::result<insn::step> guest::execute_watched(cpu::vcpu& v, insn::guest_state& is, linear_memory<host_memory>& mem,
                                              const mmu::guest_paging& paging) {
    shadow_write_watch watch{mem, ram_, *shadows_[v.id()], paging, features()};
    auto r = insn::execute(is, watch, {}, &decoded_[v.id()]);
    if (watch.flush) shadow_flush(v, cpu::tlb_flush::all);
    return r;
}

status guest::store_linear(cpu::vcpu& v, std::uint64_t linear, const void* src, std::size_t n, void*) {
    guest& g = of(v);
    const mmu::guest_paging paging = paging_registers(v);
    linear_memory<host_memory> mem = g.linear(v, paging);
    const auto len = static_cast<unsigned>(n);
    std::optional<insn::fault> f;
    if (g.cfg_.mmu == paging::shadow) {
        shadow_write_watch watch{mem, g.ram_, *g.shadows_[v.id()], paging, g.features()};
        f = watch.write(linear, src, len);
        if (watch.flush) g.shadow_flush(v, cpu::tlb_flush::all);
    } else {
        f = mem.write(linear, src, len);
    }
    if (f) return fail(errc::fault, "a store to guest-linear memory faulted");
    return {};
}

void guest::emulate(cpu::vcpu& v, const cpu::npf_detail* exit) {
    const mmu::guest_paging paging = paging_of(v);
    cpu::guest_state& st = v.state;
    // The emulator works on the vCPU's registers in place (cpu::gprs: the 16 in encoding order).
    static_assert(sizeof(cpu::gprs) == 16 * sizeof(std::uint64_t) && offsetof(cpu::gprs, r15) == 15 * 8);
    insn::guest_state is{.gpr = insn::gpr_file{&st.regs.rax}, .rip = st.rip, .rflags = st.rflags};
    const std::uint32_t cs = st[cpu::seg::cs].access;
    is.code = (st.efer & x86::efer::lma) && (cs & cpu::ar::l) ? insn::mode::code64
              : (cs & cpu::ar::db) && (st.cr0 & x86::cr0::pe) ? insn::mode::code32
                                                              : insn::mode::code16;
    if (is.code == insn::mode::code64) {  // only FS and GS have a base in 64-bit mode
        for (cpu::seg s : {cpu::seg::fs, cpu::seg::gs}) is.seg_base[static_cast<unsigned>(s)] = st[s].base;
    } else {
        for (unsigned s = 0; s < 6; ++s) is.seg_base[s] = st.segs[s].base;
    }
    is.cr0 = st.cr0;
    is.cr4 = st.cr4;
    is.cpl = static_cast<std::uint8_t>(cpu::ar::dpl_of(st[cpu::seg::ss].access));
    linear_memory<host_memory> mem = linear(v, paging);
    if (exit && !exit->page_walk && !exit->fetch)
        mem.set_exit_address(exit->gpa, exit->gla_valid ? std::optional<std::uint64_t>{exit->gla} : std::nullopt);
    ++stats_.emulated;
    const std::uint64_t rsp = st.regs.rsp;
    auto r = cfg_.mmu == paging::shadow ? execute_watched(v, is, mem, paging) : insn::execute(is, mem, {}, &decoded_[v.id()]);
    if (!r) {
        v.fail("MMIO access by an instruction the emulator does not run");
        return;
    }
    switch (r->result) {
    case insn::outcome::fault:
        if (r->f.vector == insn::vector::pf) {
            st.cr2 = r->f.address;
            v.mark_dirty(cpu::vcpu::dirty_cr2);
        }
        v.inject_exception(r->f.vector, r->f.has_error_code ? std::optional<std::uint32_t>{r->f.error_code} : std::nullopt);
        return;
    case insn::outcome::partial:
    case insn::outcome::done: {
        // Only what changed goes back (a MOV changes neither RFLAGS nor RSP).
        std::uint8_t changed = cpu::vcpu::dirty_rip;
        if (is.rflags != st.rflags) changed |= cpu::vcpu::dirty_rflags;
        if (st.regs.rsp != rsp) changed |= cpu::vcpu::dirty_rsp;
        if (st.interruptibility & 3u) changed |= cpu::vcpu::dirty_interruptibility;
        st.rip = is.rip;
        st.rflags = is.rflags;
        st.interruptibility &= ~3u;  // the instruction retired: no STI/MOV SS shadow
        v.mark_dirty(changed);
        return;
    }
    }
}

void guest::on_npf(cpu::vcpu& v, const cpu::exit_info& e) {
    guest& g = of(v);
    // In the device region this vCPU reached last (linear_memory remembers it): nothing to
    // resolve, a data access to MMIO is emulated.
    if (const mmu::guest_region* r = g.last_device_[v.id()];
        r && r->contains(e.npf.gpa) && r->kind == mmu::region_kind::mmio && !e.npf.fetch) {
        g.emulate(v, &e.npf);
        return;
    }
    const mmu::access_kind access = e.npf.write   ? mmu::access_kind::write
                                    : e.npf.fetch ? mmu::access_kind::execute
                                                  : mmu::access_kind::read;
    const mmu::nested_resolution res = g.ram_.resolve_nested_fault(e.npf.gpa, access);
    if (res.action == mmu::nested_action::unbacked) {
        v.fail("nested fault: no host page left to back guest RAM at first touch");
        return;
    }
    const bool protected_write = res.action == mmu::nested_action::map && access == mmu::access_kind::write &&
                                 g.is_write_protected(e.npf.gpa);
    if (res.action == mmu::nested_action::map && !protected_write) {
        // Not mapped yet (map_on_demand), or a hardware race with a protection change.
        const bool writable = res.attrs.write && !g.is_write_protected(res.gpa);
        if (auto s = g.map_nested(res.gpa, res.hpa, res.size, writable); !s) {
            v.fail("nested fault: cannot map the page on demand");
            return;
        }
        ++g.stats_.mapped_on_demand;
        return;
    }
    if (res.action == mmu::nested_action::violation || protected_write) {
        ++g.stats_.violations;
        if (g.violation_.fn && g.violation_.fn(g, v, e.npf.gpa, g.violation_.ctx)) return;
    }
    if (e.npf.fetch) {
        v.fail("instruction fetch from guest-physical memory that is not RAM");
        return;
    }
    g.emulate(v, &e.npf);
}

} // namespace hv::vm
