#include "libhv/vm/bios_calls.hpp"
#include "libhv/core/format.hpp"
#include "libhv/dev/layout.hpp"
#include "libhv/rt/console.hpp"

namespace hv::vm {

namespace bios = dev::bios;


status bios_calls::install() {
    for (const mmu::guest_region& r : g_->memory().regions()) {
        if (r.kind == mmu::region_kind::mmio) continue;
        if (map_count_ == map_.size()) return fail(errc::overflow, "bios: more memory regions than the E820 map holds");
        map_[map_count_++] = {r.base, r.size, r.kind == mmu::region_kind::ram ? 1u : 2u};
    }
    services_.emplace(static_cast<bios::host&>(*this), bios::config{disk_, memory_map()});
    const auto* rom_region = g_->memory().find(bios::rom_base);
    if (!rom_region || rom_region->kind != mmu::region_kind::rom || rom_region->last() < bios::rom_base + bios::rom_size - 1)
        return fail(errc::not_found, "bios: no ROM at 0xf0000 for the BIOS stubs (hvm_devices::attach first)");
    const auto rom = bios::build_rom(g_->vendor() == cpu::vendor::vmx ? bios::trap::vmcall : bios::trap::vmmcall);
    HV_TRY(g_->memory().load(bios::rom_base, rom.data(), rom.size()));
    const auto ivt = bios::build_ivt();
    HV_TRY(g_->memory().load(bios::ivt_base, ivt.data(), bios::ivt_size));
    const std::uint16_t equipment = services_->equipment(), base_kib = services_->base_memory_kib();
    const std::uint8_t hard_disks = disk_.size() >= 512 ? 1 : 0;
    HV_TRY(g_->memory().load(bios::bda_equipment, &equipment, sizeof equipment));
    HV_TRY(g_->memory().load(bios::bda_base_memory_kib, &base_kib, sizeof base_kib));
    HV_TRY(g_->memory().load(bios::bda_hard_disks, &hard_disks, sizeof hard_disks));
    // The first INT reads the IVT and fetches its stub during its delivery: mapped now, so
    // no nested fault interrupts the delivery (guest::map_now says why).
    HV_TRY(g_->map_now(bios::ivt_base, bios::ivt_size));
    return g_->map_now(bios::rom_base, bios::rom_size);
}

status bios_calls::attach() {
    if (!services_) return fail(errc::invalid_argument, "bios: attach before install");
    if (g_->hypercall_owner()) return fail(errc::busy, "bios: the guest has a hypercall ABI attached already");
    g_->set_hypercall_owner(this);
    g_->vcpu(0).on(cpu::exit_reason::hypercall, &on_call);
    return {};
}

const bios::stats& bios_calls::stats() const {
    static const bios::stats none{};
    return services_ ? services_->counters() : none;
}

// Through guest memory's own accessors, which check the whole range before a byte moves
// (a transfer the guest cannot take in full changes nothing).
bool bios_calls::read(std::uint64_t gpa, void* dst, std::size_t n) { return g_->memory().read(gpa, dst, n).ok(); }
bool bios_calls::write(std::uint64_t gpa, const void* src, std::size_t n) { return g_->memory().write(gpa, src, n).ok(); }

// As the guest's own OUT to COM1's THR: the same UART, the same console line.
void bios_calls::teletype(std::uint8_t ch) { m_->io_write(dev::layout::com1, 1, ch); }
void bios_calls::report(std::string_view line) { hv::println("{}", line); }
std::uint64_t bios_calls::unix_seconds() { return m_->rtc().unix_time(); }

void bios_calls::on_call(cpu::vcpu& v, const cpu::exit_info&) {
    static_cast<bios_calls*>(guest::of(v).hypercall_owner())->serve(v);
}

void bios_calls::serve(cpu::vcpu& v) {
    v.ops().load_state(v);  // CR0, CS/SS/DS/ES bases, RSP (BIOS calls are rare: the whole state)
    cpu::guest_state& s = v.state;
    const int vector = (s.cr0 & x86::cr0::pe) ? -1 : bios::vector_at(s[cpu::seg::cs].base, s.rip);
    if (vector < 0) {
        // A VMCALL outside the BIOS stubs: #UD, as on a CPU outside VMX/SVM; in real mode
        // its IVT entry is a stub that would end the run anyway (INT 06h).
        if (!(s.cr0 & x86::cr0::pe)) return v.fail("BIOS: VMCALL/VMMCALL outside the BIOS stubs in real mode");
        v.inject_exception(6);
        return;
    }
    // The INT's frame: IP, CS, FLAGS at SS:SP (16-bit stack, wrapping in its segment).
    const std::uint64_t flags_at = s[cpu::seg::ss].base + ((s.regs.rsp + 4) & 0xffff);
    bios::regs r;
    if (!read(flags_at, &r.flags, sizeof r.flags)) return v.fail("BIOS: the INT's stack frame is not in RAM");
    auto low = [](std::uint64_t x) { return static_cast<std::uint32_t>(x); };
    r.eax = low(s.regs.rax), r.ebx = low(s.regs.rbx), r.ecx = low(s.regs.rcx), r.edx = low(s.regs.rdx);
    r.esi = low(s.regs.rsi), r.edi = low(s.regs.rdi);
    r.ds_base = low(s[cpu::seg::ds].base), r.es_base = low(s[cpu::seg::es].base);
    const bios::outcome o = services_->call(static_cast<std::uint8_t>(vector), r);
    auto put = [](std::uint64_t& reg, std::uint32_t x) { reg = (reg & ~0xffffffffull) | x; };
    put(s.regs.rax, r.eax), put(s.regs.rbx, r.ebx), put(s.regs.rcx, r.ecx), put(s.regs.rdx, r.edx);
    put(s.regs.rsi, r.esi), put(s.regs.rdi, r.edi);
    if (!write(flags_at, &r.flags, sizeof r.flags)) return v.fail("BIOS: the INT's stack frame is not in RAM");
    switch (o) {
    case bios::outcome::done: v.skip(); return;
    case bios::outcome::boot_failed: return v.fail("BIOS: INT 18h/19h: boot failure");
    case bios::outcome::waits_for_key: return v.fail("BIOS: INT 16h waits for a key: no keyboard input");
    case bios::outcome::fault: return v.fail("BIOS: a divide error or invalid opcode with no handler in the IVT");
    }
}

} // namespace hv::vm
