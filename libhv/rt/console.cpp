#include "libhv/rt/console.hpp"
#include "libhv/arch/x86/cpu.hpp"

namespace hv::console {
namespace {

constexpr std::uint16_t com1 = 0x3f8;
enum reg : std::uint16_t { data = 0, ier = 1, fcr = 2, lcr = 3, mcr = 4, lsr = 5 };
enum lsr_bit : std::uint8_t { thre = 1u << 5, temt = 1u << 6 };

// With its FIFO on (init), a 16550's THRE means the whole 16-byte transmit FIFO is
// empty: after seeing it, 16 bytes go out without asking again. Polling LSR per byte
// costs an exit per byte when libhv runs as a guest.
constexpr unsigned tx_fifo_depth = 16;
unsigned tx_fifo_room = 0;

void put(char c) {
    if (tx_fifo_room == 0) {
        while (!(x86::inb(com1 + lsr) & thre)) x86::pause();
        tx_fifo_room = tx_fifo_depth;
    }
    x86::outb(com1 + data, std::uint8_t(c));
    --tx_fifo_room;
}

const fmt::sink serial_sink{[](void*, const char* s, std::size_t n) { write(s, n); }, nullptr};

} // namespace

void init() {
    x86::outb(com1 + ier, 0x00);
    x86::outb(com1 + lcr, 0x80);  // DLAB: divisor follows
    x86::outb(com1 + data, 0x01); // 115200 baud
    x86::outb(com1 + ier, 0x00);
    x86::outb(com1 + lcr, 0x03);  // 8N1
    x86::outb(com1 + fcr, 0xc7);  // FIFO on, cleared
    x86::outb(com1 + mcr, 0x03);  // DTR, RTS
    tx_fifo_room = 0;
}

void write(const char* s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        if (s[i] == '\n') put('\r');
        put(s[i]);
    }
}

void flush() {
    while (!(x86::inb(com1 + lsr) & temt)) x86::pause();
    tx_fifo_room = tx_fifo_depth;
}

const fmt::sink& sink() { return serial_sink; }

} // namespace hv::console
