#include "libhv/dev/misc_ports.hpp"

namespace hv::dev {

void debug_exit::write(std::uint64_t offset, unsigned size, std::uint64_t value) {
    // Like QEMU: the value as written, whichever port of the window took it.
    (void)offset;
    std::uint32_t v = static_cast<std::uint32_t>(value & all_ones(size));
    if (exited_) return;    // the first write ends the run
    exited_ = true;
    value_ = v;
    if (events_) events_->raise(event{event_kind::debug_exit, result_of(v)});
}

} // namespace hv::dev
