// Programs that end a run in each way hvrun must recognise; the runner's tests use them.
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/rt/console.hpp"
#include "libhv/rt/runtime.hpp"

HV_PROGRAM(selftest_fail, "selftest.fail", "reports a failure (code 3)") {
    return hv::fail(hv::errc::no_memory, "selftest: deliberate failure");
}

HV_PROGRAM(selftest_panic, "selftest.panic", "panics") {
    hv::rt::panic("selftest: deliberate panic {}", 42);
}

HV_PROGRAM(selftest_page_fault, "selftest.page-fault", "touches unmapped memory: the #PF handler reports it") {
    volatile std::uint64_t* beyond_identity_map = reinterpret_cast<std::uint64_t*>(0x0000'7000'0000'0000ull);
    *beyond_identity_map = 1;
    return hv::fail(hv::errc::fault, "selftest: the page fault did not fault");
}

HV_PROGRAM(selftest_triple_fault, "selftest.triple-fault", "loads an empty IDT and traps: a triple fault") {
    struct [[gnu::packed]] { std::uint16_t limit; std::uint64_t base; } empty{0, 0};
    hv::console::flush();  // the reset drops what the UART's FIFO still holds ("run: ..." included)
    asm volatile("lidt %0; int3" ::"m"(empty) : "memory");
    return hv::fail(hv::errc::fault, "selftest: survived a triple fault");
}

HV_PROGRAM(selftest_hang, "selftest.hang", "never ends: the runner's timeout must") {
    hv::x86::halt_forever();
}
