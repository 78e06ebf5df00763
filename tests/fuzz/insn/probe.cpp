// Configure-time probe: can clang++ link a libFuzzer binary here?
#include <cstddef>
#include <cstdint>
#ifdef HV_FUZZ_ZYDIS
#include <Zydis/Zydis.h>
#endif
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) {
#ifdef HV_FUZZ_ZYDIS
    ZydisDecoder d;
    ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
#endif
    return 0;
}
