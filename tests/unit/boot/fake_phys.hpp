// A small physical memory for boot-structure tests: writes at addresses, reads back.
#pragma once
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>
#include "libhv/boot/boot_info.hpp"

struct fake_phys {
    std::uint64_t base;
    std::vector<std::uint8_t> bytes;

    explicit fake_phys(std::uint64_t b, std::size_t size = 64 * 1024) : base(b), bytes(size) {}

    template <class T>
    void put(std::uint64_t pa, const T& v) {
        std::memcpy(bytes.data() + (pa - base), &v, sizeof v);
    }
    void put_string(std::uint64_t pa, std::string_view s) {
        std::memcpy(bytes.data() + (pa - base), s.data(), s.size());
        bytes[pa - base + s.size()] = 0;
    }
    hv::boot::memory_reader reader() {
        return {[](void* ctx, std::uint64_t pa, void* dst, std::size_t n) -> hv::status {
                    auto* self = static_cast<fake_phys*>(ctx);
                    if (pa < self->base || pa + n > self->base + self->bytes.size())
                        return hv::fail(hv::errc::fault, "outside fake memory");
                    std::memcpy(dst, self->bytes.data() + (pa - self->base), n);
                    return {};
                },
                this};
    }
};
