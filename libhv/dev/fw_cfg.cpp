#include "libhv/dev/fw_cfg.hpp"

namespace hv::dev {

namespace {
constexpr std::uint8_t signature[4] = {'Q', 'E', 'M', 'U'};
constexpr std::uint8_t id_traditional[4] = {1, 0, 0, 0};     // bit 0: traditional interface

template <std::size_t N>
void put_le(std::uint8_t (&out)[N], std::uint64_t v) {
    for (std::size_t i = 0; i < N; ++i) out[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
} // namespace

fw_cfg::fw_cfg() {
    set_cpus(1, 1);
}

void fw_cfg::set_ram_size(std::uint64_t bytes) { put_le(ram_size_, bytes); }

void fw_cfg::set_cpus(std::uint16_t present, std::uint16_t max) {
    put_le(nb_cpus_, present);
    put_le(max_cpus_, max);
}

result<std::uint16_t> fw_cfg::add_file(std::string_view name, std::span<const std::uint8_t> data) {
    if (name.empty() || name.size() >= name_size) return fail(errc::invalid_argument, "fw_cfg: bad file name");
    if (file_count_ == max_files) return fail(errc::no_memory, "fw_cfg: file table full");
    if (data.size() > 0xffffffffu) return fail(errc::out_of_range, "fw_cfg: file too large");
    for (std::size_t i = 0; i < file_count_; ++i)
        if (std::string_view(files_[i].name) == name) return fail(errc::exists, "fw_cfg: file exists");
    file& f = files_[file_count_];
    for (std::size_t i = 0; i < name_size; ++i) f.name[i] = i < name.size() ? name[i] : '\0';
    f.data = data;
    return static_cast<std::uint16_t>(static_cast<std::uint16_t>(fw_cfg_key::file_first) + file_count_++);
}

std::uint8_t fw_cfg::item_byte(std::uint16_t key, std::uint32_t off) const {
    auto from = [off](const std::uint8_t* p, std::size_t n) -> std::uint8_t { return off < n ? p[off] : 0; };
    switch (static_cast<fw_cfg_key>(key)) {
    case fw_cfg_key::signature: return from(signature, sizeof(signature));
    case fw_cfg_key::id: return from(id_traditional, sizeof(id_traditional));
    case fw_cfg_key::ram_size: return from(ram_size_, sizeof(ram_size_));
    case fw_cfg_key::nb_cpus: return from(nb_cpus_, sizeof(nb_cpus_));
    case fw_cfg_key::max_cpus: return from(max_cpus_, sizeof(max_cpus_));
    case fw_cfg_key::cmdline_size: {
        const auto n = static_cast<std::uint32_t>(cmdline_.empty() ? 0 : cmdline_.size() + 1);
        return off < 4 ? static_cast<std::uint8_t>(n >> (8 * off)) : 0;
    }
    case fw_cfg_key::cmdline_data:
        return off < cmdline_.size() ? static_cast<std::uint8_t>(cmdline_[off]) : 0;  // then the NUL
    case fw_cfg_key::file_dir: {
        // u32 count (big-endian), then one fw_cfg_file per file.
        if (off < 4) return static_cast<std::uint8_t>(file_count_ >> (8 * (3 - off)));
        std::uint32_t rel = off - 4;
        std::size_t idx = rel / sizeof(fw_cfg_file);
        std::uint32_t at = rel % sizeof(fw_cfg_file);
        if (idx >= file_count_) return 0;
        const file& f = files_[idx];
        auto size = static_cast<std::uint32_t>(f.data.size());
        auto select = static_cast<std::uint16_t>(static_cast<std::uint16_t>(fw_cfg_key::file_first) + idx);
        if (at < 4) return static_cast<std::uint8_t>(size >> (8 * (3 - at)));
        if (at < 6) return static_cast<std::uint8_t>(select >> (8 * (5 - at)));
        if (at < 8) return 0;
        return static_cast<std::uint8_t>(f.name[at - 8]);
    }
    default: break;
    }
    std::uint16_t first = static_cast<std::uint16_t>(fw_cfg_key::file_first);
    if (key >= first && key < first + file_count_) {
        const file& f = files_[key - first];
        return off < f.data.size() ? f.data[off] : 0;
    }
    return 0;
}

std::uint64_t fw_cfg::read(std::uint64_t offset, unsigned size) {
    if (offset != 1) return all_ones(size);
    std::uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        v |= std::uint64_t{item_byte(selector_, offset_)} << (8 * i);
        if (offset_ != 0xffffffffu) ++offset_;
    }
    return v;
}

void fw_cfg::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    if (offset == 0) {
        selector_ = static_cast<std::uint16_t>(value);
        offset_ = 0;
    }
    // Data-port writes are ignored, as in QEMU since 2.4.
}

} // namespace hv::dev
