#include <cstdint>
#include <span>
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/cpu_tables.hpp"
#include "libhv/core/cmdline.hpp"
#include "libhv/mmu/format_x86.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"
#include "libhv/rt/smp.hpp"

extern "C" {
extern const hv::rt::program __hv_programs_start[], __hv_programs_end[];
extern void (*__init_array_start[])(), (*__init_array_end[])();
extern char __hv_image_start[], __hv_image_end[];
}

namespace hv::rt {
namespace {

// Everything below 4 GiB is identity-mapped by the boot code; the allocator covers it.
constexpr std::uint64_t mapped_limit = 4ull << 30;
std::uint64_t page_bitmap[mapped_limit / mem::page_size / 64];
mem::page_allocator pages;
boot::info boot_info;
std::uint64_t start_tsc = 0;

hv::status read_identity(void*, std::uint64_t paddr, void* dst, std::size_t n) {
    if (paddr >= mapped_limit || n > mapped_limit - paddr)
        return hv::fail(hv::errc::fault, "boot structure lies above the identity-mapped 4 GiB");
    __builtin_memcpy(dst, reinterpret_cast<const void*>(paddr), n);
    return {};
}

void port_out16(void*, std::uint16_t port, std::uint16_t v) { x86::outw(port, v); }
std::uint8_t port_in8(void*, std::uint16_t port) { return x86::inb(port); }

void init_memory(const boot::info& bi) {
    pages.init(page_bitmap);
    for (std::size_t i = 0; i < bi.region_count; ++i)
        if (bi.regions[i].type == boot::region_type::available) pages.add_free(bi.regions[i].base, bi.regions[i].length);
    pages.reserve(0, 1 << 20);
    pages.reserve(reinterpret_cast<std::uintptr_t>(__hv_image_start),
                  reinterpret_cast<std::uintptr_t>(__hv_image_end) - reinterpret_cast<std::uintptr_t>(__hv_image_start));
    pages.reserve(bi.info_start, bi.info_end - bi.info_start);
    for (std::size_t i = 0; i < bi.module_count; ++i)
        pages.reserve(bi.modules[i].start, bi.modules[i].end - bi.modules[i].start);
}

// libhv's tables (host, NPT, shadow) pick memory types through hypervisor_pat; program
// it before anything builds one. Only entries 4 and 5 differ from the power-on value and
// the boot tables use neither, so no mapping changes type: a TLB flush is enough.
void program_pat() {
    x86::wrmsr(x86::msr::pat, mmu::hypervisor_pat_msr());
    x86::write_cr3(x86::read_cr3());
}

std::span<const program> programs() { return {__hv_programs_start, __hv_programs_end}; }

const program* select_program(std::string_view cmdline) {
    auto wanted = cmdline_value(cmdline, "run");
    for (const auto& p : programs()) {
        if (!wanted) {
            if (std::string_view(p.name).starts_with("selftest.")) continue;
            return &p;
        }
        if (*wanted == p.name) return &p;
    }
    return nullptr;
}

} // namespace

void* alloc_zeroed_pages(std::size_t count, std::size_t align) {
    auto pa = pages.alloc(count, align);
    if (!pa) panic("out of memory allocating {} pages: {}", count, pa.err().what);
    auto* p = reinterpret_cast<void*>(*pa);
    __builtin_memset(p, 0, count * mem::page_size);
    return p;
}

std::uint64_t start_ticks() { return start_tsc; }

extern "C" [[noreturn]] void hv_start(std::uint32_t magic, std::uint32_t info_paddr) {
    start_tsc = x86::rdtsc();
    smp::init_bsp_percpu();
    console::init();
    for (auto* ctor = __init_array_start; ctor != __init_array_end; ++ctor) (*ctor)();
    x86::init_cpu_tables();
    x86::mask_legacy_pic();
    x86::enable_sse();
    program_pat();

    const boot::port_io ports{&port_out16, &port_in8, nullptr};
    auto parsed = boot::parse(magic, info_paddr, {&read_identity, nullptr}, boot_info, &ports);
    if (!parsed) panic("boot information (magic {:#x} at {:#x}): {}", magic, info_paddr, parsed.err().what);
    init_memory(boot_info);

    const program* p = select_program(boot_info.cmdline);
    const bool loud = !p || !p->quiet_start || cmdline_value(boot_info.cmdline, "verbose");
    if (loud) {
        println("libhv 0.1.0: booting");
        println("boot: loader={} name=\"{}\" cmdline=\"{}\" modules={} memory-regions={} free={} KiB",
                boot::to_string(boot_info.source), boot_info.loader_name, boot_info.cmdline, boot_info.module_count,
                boot_info.region_count, pages.free_frames() * 4);
    }
    if (!p) {
        println("programs in this image:");
        for (const auto& q : programs()) println("  {}  {}", q.name, q.summary);
        finish(hv::fail(hv::errc::not_found, "run= names no program in this image"));
    }
    if (loud) println("run: {}", p->name);
    context ctx{boot_info, pages, boot_info.cmdline};
    finish(p->main(ctx));
}

} // namespace hv::rt
