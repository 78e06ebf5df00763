#include "libhv/vm/debug_ports.hpp"
#include "libhv/rt/console.hpp"

namespace hv::vm {

namespace {
constexpr std::uint16_t com1_lsr = debug_ports::com1 + 5;
constexpr std::uint8_t lsr_thr_empty = 0x20, lsr_idle = 0x40;
} // namespace

void debug_ports::attach(guest& g, const char* prefix) {
    guest_ = &g;
    prefix_ = prefix;
    g.set_ports(ports());
}

std::uint32_t debug_ports::in(void*, std::uint16_t port, std::uint8_t size) {
    if (port == com1_lsr) return lsr_thr_empty | lsr_idle;
    if (port >= com1 && port < com1 + 8) return 0;
    return size == 4 ? ~0u : (1u << (8 * size)) - 1;
}

void debug_ports::out(void* ctx, std::uint16_t port, std::uint8_t, std::uint32_t value) {
    auto& self = *static_cast<debug_ports*>(ctx);
    if (port == com1) {
        self.put(static_cast<char>(value));
    } else if (port == debug_exit && !self.exit_.ended) {
        self.exit_ = {true, value};
        if (self.used_) self.put('\n');
        self.guest_->stop_all("guest wrote the debug-exit port");
    }
}

void debug_ports::put(char c) {
    if (c != '\n' && c != '\r' && used_ < sizeof line_) line_[used_++] = c;
    if (c == '\n' || used_ == sizeof line_) {
        hv::println("{}{}", prefix_, std::string_view(line_, used_));
        used_ = 0;
    }
}

} // namespace hv::vm
