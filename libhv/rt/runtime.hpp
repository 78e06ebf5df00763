// The runtime every libhv image shares: boot, console, memory, then one program
// chosen by the command line (`run=NAME`), whose status becomes the run's result.
//
// Serial protocol (read by hvrun):
//   HV-PANIC: <reason>                          before a failing end caused by a panic
//   HV-BENCH: <name> <iterations> <value> <unit> one benchmark result
//   HV-RESULT: PASS | HV-RESULT: FAIL code=<n> reason=<text>   always the last line
// then the emulator is ended through QEMU's isa-debug-exit (port 0xf4) and Bochs' 0x8900.
#pragma once
#include <cstdint>
#include <string_view>
#include "libhv/boot/boot_info.hpp"
#include "libhv/core/format.hpp"
#include "libhv/core/result.hpp"
#include "libhv/mem/page_allocator.hpp"

namespace hv::rt {

struct context {
    const boot::info& boot;
    mem::page_allocator& pages;
    std::string_view cmdline;
};

struct program {
    const char* name;
    const char* summary;
    hv::status (*main)(context&);
    // The runtime prints its start-up lines (version, boot information, program) only
    // with `verbose` on the command line: for images that run a guest, whose start-up
    // they would slow (Bochs' UART takes ~4,300 ticks per byte).
    bool quiet_start = false;
};

[[noreturn]] void finish(hv::status result);
[[noreturn]] void panic_message(std::string_view message);
void bench_report(std::string_view name, std::uint64_t iterations, std::uint64_t value, std::string_view unit);

template <class... Args>
[[noreturn]] void panic(std::string_view f, const Args&... args) {
    char buf[256];
    fmt::format_to(buf, sizeof buf, f, args...);
    panic_message(buf);
}

// The TSC as hv_start read it first (Bochs: instructions since power-on), for benchmarks
// that count from the image's start.
[[nodiscard]] std::uint64_t start_ticks();

// A zeroed page from the boot allocator, identity-mapped; panics when memory runs out.
void* alloc_zeroed_pages(std::size_t count = 1, std::size_t align = 1);
// The same as a cpu::page_alloc_fn (vm::enable, vm::guest::init, the backends' enable).
inline void* alloc_pages(std::size_t count) { return alloc_zeroed_pages(count); }

} // namespace hv::rt

// Defines a program the command line can select with run=NAME.
#define HV_PROGRAM(ident, name, summary)                                                        \
    static hv::status ident(hv::rt::context&);                                                  \
    [[gnu::used, gnu::section(".hv_programs." #ident), gnu::aligned(8)]]                        \
    static const hv::rt::program ident##_program{name, summary, &ident};                        \
    static hv::status ident([[maybe_unused]] hv::rt::context& ctx)

// The same for a program that starts quietly (program::quiet_start).
#define HV_PROGRAM_QUIET(ident, name, summary)                                                  \
    static hv::status ident(hv::rt::context&);                                                  \
    [[gnu::used, gnu::section(".hv_programs." #ident), gnu::aligned(8)]]                        \
    static const hv::rt::program ident##_program{name, summary, &ident, true};                  \
    static hv::status ident([[maybe_unused]] hv::rt::context& ctx)

#define HV_ASSERT(cond)                                                                         \
    do {                                                                                        \
        if (!(cond)) hv::rt::panic("assertion failed: {} at {}:{}", #cond, __FILE__, __LINE__); \
    } while (0)
