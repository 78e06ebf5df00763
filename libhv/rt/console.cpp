#include "libhv/rt/console.hpp"
#include "libhv/arch/x86/cpu.hpp"
#include "libhv/arch/x86/percpu.hpp"
#include "libhv/core/spinlock.hpp"

namespace hv::console {
namespace {

constexpr std::uint16_t com1 = 0x3f8;
enum reg : std::uint16_t { data = 0, ier = 1, fcr = 2, lcr = 3, mcr = 4, lsr = 5 };
enum lsr_bit : std::uint8_t { thre = 1u << 5, temt = 1u << 6 };

void put(char c) {
    while (!(x86::inb(com1 + lsr) & thre)) x86::pause();
    x86::outb(com1 + data, std::uint8_t(c));
}

recursive_spinlock console_lock;

// Unique per physical CPU: the address of its per-CPU block (set before console::init).
std::uintptr_t cpu_token() { return reinterpret_cast<std::uintptr_t>(x86::this_cpu()); }

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
}

void lock() { console_lock.lock(cpu_token()); }
void unlock() { console_lock.unlock(); }

void write(const char* s, std::size_t n) {
    lock();
    for (std::size_t i = 0; i < n; ++i) {
        if (s[i] == '\n') put('\r');
        put(s[i]);
    }
    unlock();
}

void flush() {
    while (!(x86::inb(com1 + lsr) & temt)) x86::pause();
}

const fmt::sink& sink() { return serial_sink; }

} // namespace hv::console
