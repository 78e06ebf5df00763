// A guest-linear memory for the emulator tests: byte regions that may refuse reads or
// writes (a #PF like the page walker would raise), with a log of every access made.
#pragma once
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>
#include "libhv/cpu/insn/emulate.hpp"

namespace insn_test {

class fake_memory final : public hv::insn::memory {
public:
    struct region {
        std::uint64_t base = 0;
        std::vector<std::uint8_t> bytes;
        bool readable = true;
        bool writable = true;
    };
    struct record {
        char kind;  // 'r' read, 'w' write, 'p' probe (successful accesses only)
        std::uint64_t la;
        unsigned n;
        hv::insn::access_type a;
    };

    region& add(std::uint64_t base, std::size_t n, std::uint8_t fill = 0) {
        regions.push_back(region{base, std::vector<std::uint8_t>(n, fill), true, true});
        return regions.back();
    }
    region& add(std::uint64_t base, const std::uint8_t* src, std::size_t n) {
        regions.push_back(region{base, std::vector<std::uint8_t>(src, src + n), true, true});
        return regions.back();
    }

    std::optional<hv::insn::fault> read(std::uint64_t la, void* dst, unsigned n, hv::insn::access_type a) override {
        if (auto f = check(la, n, a)) return f;
        for (unsigned i = 0; i < n; ++i) static_cast<std::uint8_t*>(dst)[i] = *byte(la + i);
        log.push_back({'r', la, n, a});
        return std::nullopt;
    }
    std::optional<hv::insn::fault> write(std::uint64_t la, const void* src, unsigned n) override {
        if (auto f = check(la, n, hv::insn::access_type::write)) return f;
        for (unsigned i = 0; i < n; ++i) *byte(la + i) = static_cast<const std::uint8_t*>(src)[i];
        log.push_back({'w', la, n, hv::insn::access_type::write});
        return std::nullopt;
    }
    std::optional<hv::insn::fault> probe(std::uint64_t la, unsigned n, hv::insn::access_type a) override {
        if (auto f = check(la, n, a)) return f;
        log.push_back({'p', la, n, a});
        return std::nullopt;
    }

    std::uint8_t* byte(std::uint64_t la) {
        for (auto& r : regions)
            if (la - r.base < r.bytes.size()) return &r.bytes[la - r.base];
        return nullptr;
    }
    std::uint64_t load(std::uint64_t la, unsigned n) {
        std::uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{*byte(la + i)} << (8 * i);
        return v;
    }
    std::size_t count(char kind) const {
        std::size_t c = 0;
        for (const auto& r : log) c += r.kind == kind;
        return c;
    }

    std::deque<region> regions;  // stable references across add()
    std::vector<record> log;

private:
    const region* find(std::uint64_t la) const {
        for (const auto& r : regions)
            if (la - r.base < r.bytes.size()) return &r;
        return nullptr;
    }
    // #PF error code: P (bit 0) for a protection fault, W (bit 1), I/D (bit 4).
    std::optional<hv::insn::fault> check(std::uint64_t la, unsigned n, hv::insn::access_type a) const {
        const bool w = a == hv::insn::access_type::write || a == hv::insn::access_type::rmw;
        const bool r = a != hv::insn::access_type::write;
        for (unsigned i = 0; i < n; ++i) {
            const region* g = find(la + i);
            std::uint32_t ec = (w ? 2u : 0u) | (a == hv::insn::access_type::fetch ? 16u : 0u);
            if (!g) return hv::insn::fault{hv::insn::vector::pf, true, ec, la + i};
            if ((r && !g->readable) || (w && !g->writable)) return hv::insn::fault{hv::insn::vector::pf, true, ec | 1u, la + i};
        }
        return std::nullopt;
    }
};

} // namespace insn_test
