// The hypervisor's own console: COM1, a 16550 at 0x3f8, its FIFO on. write() waits for
// THRE once per 16 bytes, so up to 16 bytes may still be in the FIFO when it returns:
// flush() before anything that resets the machine without the runtime's finish/panic
// (which flush).
#pragma once
#include "libhv/core/format.hpp"

namespace hv::console {

void init();
void write(const char* s, std::size_t n);
void flush();  // until the UART has shifted out its last bit (LSR.TEMT)
const fmt::sink& sink();

} // namespace hv::console

namespace hv {

template <class... Args>
void print(std::string_view f, const Args&... args) {
    fmt::format(console::sink(), f, args...);
}

template <class... Args>
void println(std::string_view f, const Args&... args) {
    fmt::format(console::sink(), f, args...);
    console::write("\n", 1);
}

} // namespace hv
