#include "libhv/dev/bus.hpp"

namespace hv::dev {

bool bus::valid_size(unsigned size) const {
    return (size == 1 || size == 2 || size == 4 || size == 8) && size <= max_size_;
}

status bus::map(std::uint64_t base, std::uint64_t length, io_device& dev, std::uint8_t sizes) {
    if (length == 0 || (sizes & size_any) == 0) return fail(errc::invalid_argument, "bus: empty range or no sizes");
    std::uint64_t last = base + (length - 1);
    if (last < base) return fail(errc::out_of_range, "bus: range wraps");
    if (limit_ != 0 && last >= limit_) return fail(errc::out_of_range, "bus: range beyond the bus");
    if (count_ == capacity) return fail(errc::no_memory, "bus: mapping table full");
    std::size_t pos = 0;
    while (pos < count_ && map_[pos].base < base) ++pos;
    if (pos > 0 && map_[pos - 1].last >= base) return fail(errc::exists, "bus: range overlaps a mapping");
    if (pos < count_ && map_[pos].base <= last) return fail(errc::exists, "bus: range overlaps a mapping");
    for (std::size_t i = count_; i > pos; --i) map_[i] = map_[i - 1];
    map_[pos] = mapping{base, last, &dev, sizes};
    ++count_;
    last_hit_ = nullptr;  // the mappings moved
    return {};
}

std::size_t bus::unmap(io_device& dev) {
    std::size_t out = 0, removed = 0;
    for (std::size_t i = 0; i < count_; ++i) {
        if (map_[i].dev == &dev) { ++removed; continue; }
        map_[out++] = map_[i];
    }
    count_ = out;
    last_hit_ = nullptr;
    return removed;
}

const bus::mapping* bus::lookup(std::uint64_t addr) const {
    // A device's registers are mostly accessed in runs (a string of bytes to a UART, a
    // disk's data port): the last mapping found first.
    if (last_hit_ && addr - last_hit_->base <= last_hit_->last - last_hit_->base) return last_hit_;
    // Last mapping whose base <= addr.
    std::size_t lo = 0, hi = count_;
    while (lo < hi) {
        std::size_t mid = (lo + hi) / 2;
        if (map_[mid].base <= addr) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return nullptr;
    const mapping& m = map_[lo - 1];
    if (addr > m.last) return nullptr;
    last_hit_ = &m;
    return &m;
}

io_device* bus::find(std::uint64_t addr) const {
    const mapping* m = lookup(addr);
    return m ? m->dev : nullptr;
}

const bus::mapping* bus::whole(std::uint64_t addr, unsigned size) const {
    const mapping* m = lookup(addr);
    return m && addr + (size - 1) <= m->last && addr + (size - 1) >= addr && (m->sizes & size) ? m : nullptr;
}

std::size_t bus::read_block(std::uint64_t addr, unsigned size, void* dst, std::size_t count) {
    const mapping* m = valid_size(size) ? whole(addr, size) : nullptr;
    return m ? m->dev->read_block(addr - m->base, size, dst, count) : 0;
}

std::size_t bus::write_block(std::uint64_t addr, unsigned size, const void* src, std::size_t count) {
    const mapping* m = valid_size(size) ? whole(addr, size) : nullptr;
    return m ? m->dev->write_block(addr - m->base, size, src, count) : 0;
}

std::uint64_t bus::read(std::uint64_t addr, unsigned size) {
    if (!valid_size(size)) {
        ++stats_.bad_size;
        return all_ones(size > 8 ? 8 : size);
    }
    const mapping* m = lookup(addr);
    if (m && addr + (size - 1) <= m->last && addr + (size - 1) >= addr && (m->sizes & size)) {
        return m->dev->read(addr - m->base, size) & all_ones(size);
    }
    if (!m && size == 1) {
        ++stats_.unclaimed_reads;
        return 0xff;
    }
    if (size == 1) {    // a device that does not take bytes
        ++stats_.bad_size;
        return 0xff;
    }
    ++stats_.split;
    return read_bytes(addr, size);
}

void bus::write(std::uint64_t addr, unsigned size, std::uint64_t value) {
    if (!valid_size(size)) {
        ++stats_.bad_size;
        return;
    }
    value &= all_ones(size);
    const mapping* m = lookup(addr);
    if (m && addr + (size - 1) <= m->last && addr + (size - 1) >= addr && (m->sizes & size)) {
        m->dev->write(addr - m->base, size, value);
        return;
    }
    if (!m && size == 1) {
        ++stats_.unclaimed_writes;
        return;
    }
    if (size == 1) {
        ++stats_.bad_size;
        return;
    }
    ++stats_.split;
    write_bytes(addr, size, value);
}

std::uint64_t bus::read_bytes(std::uint64_t addr, unsigned size) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t a = addr + i;
        if (limit_ != 0) a %= limit_;     // port 0xffff + 1 wraps like the hardware
        v |= read(a, 1) << (8 * i);
    }
    return v;
}

void bus::write_bytes(std::uint64_t addr, unsigned size, std::uint64_t value) {
    for (unsigned i = 0; i < size; ++i) {
        std::uint64_t a = addr + i;
        if (limit_ != 0) a %= limit_;
        write(a, 1, (value >> (8 * i)) & 0xff);
    }
}

} // namespace hv::dev
