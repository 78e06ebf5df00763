// A fake machine for host tests of libhv/io: guest RAM as host pages, a physmap with
// overlays (hypervisor and foreign pages), recorded platform effects, and guest-virtual
// access with gva == gpa over that physmap.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "libhv/io/xen_domain.hpp"

namespace fake {

struct alignas(4096) page {
    unsigned char b[4096];
};

struct platform final : hv::xen::platform {
    explicit platform(std::size_t ram_pages = 64) : ram(ram_pages) {
        for (auto& p : ram) p = std::make_unique<page>();
    }

    std::vector<std::unique_ptr<page>> ram;      // gfn 0 .. ram.size()-1
    std::map<std::uint64_t, void*> overlay;      // gfn -> hypervisor page
    std::map<std::uint64_t, std::pair<void*, bool>> foreign; // gfn -> (page, readonly)
    std::map<std::uint32_t, unsigned> callbacks; // vcpu -> raise_callback count
    std::uint8_t last_vector = 0;
    std::map<std::uint32_t, std::uint64_t> timers;
    std::uint64_t now = 1'000'000;
    unsigned yields = 0, blocks = 0;
    int shutdown_reason = -1;
    std::string console_out, console_in;
    bool fail_physmap = false;

    void* guest_frame(std::uint64_t gfn) override {
        if (auto it = foreign.find(gfn); it != foreign.end()) return it->second.first;
        if (auto it = overlay.find(gfn); it != overlay.end()) return it->second;
        return gfn < ram.size() ? ram[gfn]->b : nullptr;
    }
    hv::status map_hypervisor_page(std::uint64_t gfn, void* p) override {
        if (fail_physmap || gfn >= (1ull << 40)) return hv::fail(hv::errc::invalid_argument, "fake: bad gfn");
        overlay[gfn] = p;
        return {};
    }
    hv::status map_foreign_page(std::uint64_t gfn, void* p, bool ro) override {
        if (fail_physmap || foreign.count(gfn)) return hv::fail(hv::errc::busy, "fake: gfn taken");
        foreign[gfn] = {p, ro};
        return {};
    }
    hv::status unmap_foreign_page(std::uint64_t gfn) override {
        foreign.erase(gfn);
        return {};
    }
    void raise_callback(std::uint32_t vcpu, std::uint8_t vector) override {
        ++callbacks[vcpu];
        last_vector = vector;
    }
    std::uint64_t now_ns() override { return now; }
    void set_timer(std::uint32_t vcpu, std::uint64_t deadline) override { timers[vcpu] = deadline; }
    void cancel_timer(std::uint32_t vcpu) override { timers.erase(vcpu); }
    void yield(std::uint32_t) override { ++yields; }
    void block(std::uint32_t) override { ++blocks; }
    void shutdown(unsigned reason) override { shutdown_reason = static_cast<int>(reason); }
    void console_write(const char* s, std::size_t n) override { console_out.append(s, n); }
    std::size_t console_read(char* s, std::size_t n) override {
        n = std::min(n, console_in.size());
        std::memcpy(s, console_in.data(), n);
        console_in.erase(0, n);
        return n;
    }

    template <class T = unsigned char>
    T* at(std::uint64_t gpa) {
        auto* f = static_cast<unsigned char*>(guest_frame(gpa >> 12));
        return f ? reinterpret_cast<T*>(f + (gpa & 4095)) : nullptr;
    }
};

// gva == gpa, page by page through the platform's physmap (so overlays are visible).
struct guest final : hv::xen::guest_access {
    explicit guest(platform& p) : plat(p) {}
    platform& plat;
    std::uint64_t reads = 0, writes = 0;

    template <class F>
    hv::status walk(std::uint64_t gva, std::size_t n, F&& f) {
        std::size_t done = 0;
        while (done < n) {
            std::uint64_t a = gva + done;
            if (a < gva) return hv::fail(hv::errc::fault, "fake: wraps");
            auto* fr = static_cast<unsigned char*>(plat.guest_frame(a >> 12));
            if (!fr) return hv::fail(hv::errc::fault, "fake: not mapped");
            std::size_t k = std::min<std::size_t>(n - done, 4096 - (a & 4095));
            f(fr + (a & 4095), done, k);
            done += k;
        }
        return {};
    }
    hv::status copy_from_guest(void* dst, std::uint64_t gva, std::size_t n) override {
        ++reads;
        return walk(gva, n, [&](unsigned char* p, std::size_t off, std::size_t k) {
            std::memcpy(static_cast<unsigned char*>(dst) + off, p, k);
        });
    }
    hv::status copy_to_guest(std::uint64_t gva, const void* src, std::size_t n) override {
        ++writes;
        return walk(gva, n, [&](unsigned char* p, std::size_t off, std::size_t k) {
            std::memcpy(p, static_cast<const unsigned char*>(src) + off, k);
        });
    }
};

// A domain with its fake platform, created in `table`.
struct vm {
    platform plat;
    std::unique_ptr<hv::xen::domain> dom = std::make_unique<hv::xen::domain>();
    guest mem{plat};
    vm(hv::xen::domain_table& t, hv::xen::domid_t id, unsigned vcpus = 2, std::size_t ram_pages = 64)
        : plat(ram_pages) {
        auto st = dom->init(id, vcpus, plat, t);
        if (!st) throw std::runtime_error(st.err().what);
    }
    hv::xen::domain& d() { return *dom; }
};

} // namespace fake
