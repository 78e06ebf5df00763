#include "libhv/vm/boot.hpp"

namespace hv::vm {

std::optional<boot_module> find_module(const boot::info& info, std::string_view name) {
    for (std::size_t i = 0; i < info.module_count; ++i) {
        const boot::module& m = info.modules[i];
        std::string_view s = m.cmdline;
        if (s.substr(0, name.size()) != name || (s.size() > name.size() && s[name.size()] != ' ')) continue;
        s.remove_prefix(name.size());
        while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
        const auto* start = reinterpret_cast<const std::byte*>(static_cast<std::uintptr_t>(m.start));
        return boot_module{{start, static_cast<std::size_t>(m.end - m.start)}, s};
    }
    return std::nullopt;
}

status add_pc_ram(guest& g, std::uint64_t ram_bytes, mmu::ram_backing backing) {
    if (ram_bytes <= high_ram_start || ram_bytes % mmu::page_size)
        return fail(errc::invalid_argument, "guest RAM must be page-sized and above 1 MiB");
    HV_TRY(g.memory().add_ram(0, low_ram_end, backing));
    return g.memory().add_ram(high_ram_start, ram_bytes - high_ram_start, backing);
}

cpu::guest_state entry_state(const loader::vcpu_state& s) {
    if (s.mode == loader::cpu_mode::real16) {
        // Real-mode segments (base = selector * 16) are the cpu layer's own.
        cpu::guest_state g = cpu::initial_state(cpu::guest_mode::real, s.cs.base + s.rip);
        g.regs.rdx = s.rdx;
        g.regs.rsp = s.rsp;
        g.rflags = s.rflags | x86::rflags::fixed1;
        return g;
    }
    const bool long64 = s.mode == loader::cpu_mode::long64;
    cpu::guest_state g = cpu::initial_state(long64 ? cpu::guest_mode::long64 : cpu::guest_mode::protected32, s.rip, s.cr3);
    g.regs.rax = s.rax;
    g.regs.rbx = s.rbx;
    g.regs.rcx = s.rcx;
    g.regs.rdx = s.rdx;
    g.regs.rsi = s.rsi;
    g.regs.rdi = s.rdi;
    g.regs.rbp = s.rbp;
    g.regs.rsp = s.rsp;
    g.rflags = s.rflags | x86::rflags::fixed1;
    g.cr0 = s.cr0;
    g.cr3 = s.cr3;
    g.cr4 = s.cr4;
    g.efer = s.efer;
    auto segment_of = [](const loader::segment_state& x) {
        return cpu::segment{x.selector, x.access_rights, x.limit, x.base};
    };
    g[cpu::seg::cs] = segment_of(s.cs);
    for (cpu::seg r : {cpu::seg::ds, cpu::seg::es, cpu::seg::ss, cpu::seg::fs, cpu::seg::gs}) g[r] = segment_of(s.ds);
    g.gdtr = {s.gdt_base, s.gdt_limit};
    return g;
}

result<loader::load_result> load_kernel(guest& g, const kernel_spec& k) {
    loader::memory_range map[loader::boot_config::max_memory_map];
    std::size_t n = 0;
    for (const mmu::guest_region& r : g.memory().regions()) {
        if (n == loader::boot_config::max_memory_map) break;
        if (r.kind == mmu::region_kind::ram) map[n++] = {r.base, r.size, boot::region_type::available};
        else if (r.kind == mmu::region_kind::rom) map[n++] = {r.base, r.size, boot::region_type::reserved};
    }
    loader::boot_config cfg{};
    cfg.memory_map = {map, n};
    cfg.cmdline = k.cmdline;
    cfg.modules = k.modules;
    cfg.rsdp = k.rsdp;
    cfg.use = k.use;
    cfg.probed = k.probed;
    auto loaded = loader::load(g.memory(), k.image, cfg);
    HV_TRY(loaded);
    g.vcpu(0).state = entry_state(loaded->cpu);
    return loaded;
}

} // namespace hv::vm
