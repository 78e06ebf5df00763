#include <doctest/doctest.h>
#include <cstring>
#include <vector>
#include "libhv/cpu/io_emul.hpp"

using namespace hv::cpu;

namespace {
struct fake_io {
    std::vector<std::pair<std::uint16_t, std::uint32_t>> outs;
    std::vector<std::uint32_t> to_read;
    std::vector<std::uint8_t> sizes;
    std::vector<std::uint8_t> ram = std::vector<std::uint8_t>(0x10000);
    io_ports ports() {
        return {this,
                [](void* c, std::uint16_t, std::uint8_t size) {
                    auto* f = static_cast<fake_io*>(c);
                    f->sizes.push_back(size);
                    std::uint32_t v = f->to_read.empty() ? 0xffffffff : f->to_read.front();
                    if (!f->to_read.empty()) f->to_read.erase(f->to_read.begin());
                    return v;
                },
                [](void* c, std::uint16_t port, std::uint8_t size, std::uint32_t v) {
                    auto* f = static_cast<fake_io*>(c);
                    f->sizes.push_back(size);
                    f->outs.push_back({port, v});
                }};
    }
    guest_memory memory() {
        return {this,
                [](void* c, std::uint64_t a, void* d, std::size_t n) {
                    auto* f = static_cast<fake_io*>(c);
                    if (a + n > f->ram.size()) return false;
                    std::memcpy(d, f->ram.data() + a, n);
                    return true;
                },
                [](void* c, std::uint64_t a, const void* s, std::size_t n) {
                    auto* f = static_cast<fake_io*>(c);
                    if (a + n > f->ram.size()) return false;
                    std::memcpy(f->ram.data() + a, s, n);
                    return true;
                }};
    }
};
io_detail port_io(std::uint16_t port, std::uint8_t size, bool in, bool string = false, bool rep = false,
                  std::uint8_t asz = 0) {
    return io_detail{port, size, asz, in, string, rep};
}
} // namespace

TEST_CASE("io emulation: IN/OUT of every size through RAX") {
    fake_io f;
    auto s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rax = 0xaaaaaaaa'bbbbccdd;
    REQUIRE(emulate_io(s, port_io(0x80, 1, false), f.ports(), f.memory()).ok());
    REQUIRE(emulate_io(s, port_io(0x80, 2, false), f.ports(), f.memory()).ok());
    REQUIRE(emulate_io(s, port_io(0x80, 4, false), f.ports(), f.memory()).ok());
    REQUIRE(f.outs.size() == 3);
    CHECK(f.outs[0].second == 0xdd);
    CHECK(f.outs[1].second == 0xccdd);
    CHECK(f.outs[2].second == 0xbbbbccdd);

    f.to_read = {0x12345678, 0x12345678, 0x12345678};
    REQUIRE(emulate_io(s, port_io(0x60, 1, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0xaaaaaaaa'bbbbcc78);  // AL only
    REQUIRE(emulate_io(s, port_io(0x60, 2, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0xaaaaaaaa'bbbb5678);  // AX only
    REQUIRE(emulate_io(s, port_io(0x60, 4, true), f.ports(), f.memory()).ok());
    CHECK(s.regs.rax == 0x12345678);           // EAX zero-extends
    CHECK(f.sizes == std::vector<std::uint8_t>{1, 2, 4, 1, 2, 4});
    CHECK_FALSE(emulate_io(s, port_io(0x60, 3, true), f.ports(), f.memory()).ok());
}

TEST_CASE("io emulation: REP OUTS/INS, direction flag, address size, partial runs") {
    fake_io f;
    auto s = initial_state(guest_mode::protected32, 0x1000);
    for (int i = 0; i < 8; ++i) f.ram[0x2000 + i] = static_cast<std::uint8_t>(0x10 + i);
    s.regs.rsi = 0x2000;
    s.regs.rcx = 8;
    auto r = emulate_io(s, port_io(0x3f8, 1, false, true, true, 32), f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(r->remaining == 0);
    REQUIRE(f.outs.size() == 8);
    for (int i = 0; i < 8; ++i) CHECK(f.outs[i].second == 0x10u + i);
    CHECK(s.regs.rsi == 0x2008);
    CHECK(s.regs.rcx == 0);

    // rep insw downward with DF=1, 16-bit addressing wrapping DI.
    f.to_read = {0xa1a2, 0xb1b2};
    s.rflags |= 1u << 10;
    s.regs.rdi = 0x10002;  // DI = 2 under 16-bit addressing
    s.regs.rcx = 0xffff0002;
    r = emulate_io(s, port_io(0x1f0, 2, true, true, true, 16), f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(f.ram[2] == 0xa2);
    CHECK(f.ram[3] == 0xa1);
    CHECK(f.ram[0] == 0xb2);
    CHECK(f.ram[1] == 0xb1);
    CHECK(s.regs.rdi == 0x1fffe);  // DI wrapped to 0xfffe, upper bits kept
    CHECK(s.regs.rcx == 0xffff0000);

    // A partial run leaves the rest for the next exit.
    s.rflags &= ~(1ull << 10);
    s.regs.rsi = 0x2000;
    s.regs.rcx = 5;
    f.outs.clear();
    r = emulate_io(s, port_io(0x80, 1, false, true, true, 32), f.ports(), f.memory(), {}, 2);
    REQUIRE(r.ok());
    CHECK(r->remaining == 3);
    CHECK(s.regs.rcx == 3);
    CHECK(f.outs.size() == 2);

    // Non-REP string: one element, RCX untouched; a segment base applies.
    s.regs.rcx = 77;
    s.regs.rsi = 0x10;
    f.ram[0x2010] = 0x5a;
    f.outs.clear();
    r = emulate_io(s, port_io(0x80, 1, false, true, false, 32), f.ports(), f.memory(), {0x2000, 0});
    REQUIRE(r.ok());
    CHECK(f.outs.at(0).second == 0x5a);  // from DS.base 0x2000 + SI 0x10
    CHECK(s.regs.rcx == 77);
    s.regs.rsi = 0xfffff000;
    CHECK(emulate_io(s, port_io(0x80, 1, false, true, false, 32), f.ports(), f.memory()).code() == hv::errc::fault);
}

// ---- REP strings a page at a time ----

namespace {
// Guest-linear pages 0..31 mapped to host pages in a shuffled order (so a run that
// crosses a page must translate again); pages listed in `unmapped` fault, pages in
// `device` are not RAM (page() gives nullptr, read/write still work, as MMIO).
struct paged_io {
    static constexpr std::size_t pages = 32;
    std::vector<std::uint8_t> host = std::vector<std::uint8_t>(pages * 4096);
    std::uint64_t unmapped = 0, device = 0;  // bit masks of linear pages
    bool bursts = true, page_fn = true;
    std::size_t block_limit = ~std::size_t{0};  // elements a burst takes at most
    std::uint32_t next_in = 0x1000;
    std::vector<std::uint32_t> port_log;  // every element, in order
    unsigned element_calls = 0, block_calls = 0, page_calls = 0;

    static std::size_t frame_of(std::uint64_t page) { return (page * 7 + 3) % pages; }
    std::uint8_t* at(std::uint64_t linear) {
        const std::uint64_t page = linear >> 12;
        if (page >= pages || (unmapped >> page & 1)) return nullptr;
        return host.data() + frame_of(page) * 4096 + (linear & 0xfff);
    }
    std::uint8_t& byte(std::uint64_t linear) { return *at(linear); }

    static bool copy(paged_io& f, std::uint64_t a, void* buf, std::size_t n, bool write) {
        for (std::size_t i = 0; i < n; ++i)
            if (!f.at(a + i)) return false;
        for (std::size_t i = 0; i < n; ++i) {
            if (write) *f.at(a + i) = static_cast<const std::uint8_t*>(buf)[i];
            else static_cast<std::uint8_t*>(buf)[i] = *f.at(a + i);
        }
        return true;
    }
    std::uint32_t in_value(std::uint8_t size) {
        const std::uint32_t v = next_in++ * 0x01010101u & static_cast<std::uint32_t>((1ull << (8 * size)) - 1);
        port_log.push_back(v);
        return v;
    }
    io_ports ports() {
        io_ports p{this,
                   [](void* c, std::uint16_t, std::uint8_t size) {
                       auto* f = static_cast<paged_io*>(c);
                       ++f->element_calls;
                       return f->in_value(size);
                   },
                   [](void* c, std::uint16_t, std::uint8_t, std::uint32_t v) {
                       auto* f = static_cast<paged_io*>(c);
                       ++f->element_calls;
                       f->port_log.push_back(v);
                   }};
        if (!bursts) return p;
        p.in_block = [](void* c, std::uint16_t, std::uint8_t size, void* dst, std::size_t n) {
            auto* f = static_cast<paged_io*>(c);
            ++f->block_calls;
            if (n > f->block_limit) n = f->block_limit;
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint32_t v = f->in_value(size);
                std::memcpy(static_cast<char*>(dst) + i * size, &v, size);
            }
            return n;
        };
        p.out_block = [](void* c, std::uint16_t, std::uint8_t size, const void* src, std::size_t n) {
            auto* f = static_cast<paged_io*>(c);
            ++f->block_calls;
            if (n > f->block_limit) n = f->block_limit;
            for (std::size_t i = 0; i < n; ++i) {
                std::uint32_t v = 0;
                std::memcpy(&v, static_cast<const char*>(src) + i * size, size);
                f->port_log.push_back(v);
            }
            return n;
        };
        return p;
    }
    guest_memory memory() {
        guest_memory m{this,
                       [](void* c, std::uint64_t a, void* d, std::size_t n) {
                           return copy(*static_cast<paged_io*>(c), a, d, n, false);
                       },
                       [](void* c, std::uint64_t a, const void* s, std::size_t n) {
                           return copy(*static_cast<paged_io*>(c), a, const_cast<void*>(s), n, true);
                       }};
        if (page_fn)
            m.page = [](void* c, std::uint64_t a, bool) -> void* {
                auto* f = static_cast<paged_io*>(c);
                ++f->page_calls;
                if ((a >> 12) < pages && (f->device >> (a >> 12) & 1)) return nullptr;
                return f->at(a);
            };
        return m;
    }
    void fill() {
        for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<std::uint8_t>(i * 131 + 7);
    }
};

struct run_result {
    bool ok;
    std::uint64_t remaining, rcx, rsi, rdi;
    std::vector<std::uint8_t> host;
    std::vector<std::uint32_t> log;
};
run_result run_string(paged_io& f, guest_state s, const io_detail& io, const io_segments& segs = {},
                      std::uint64_t max_reps = ~0ull) {
    auto r = emulate_io(s, io, f.ports(), f.memory(), segs, max_reps);
    return {r.ok(), r.ok() ? r->remaining : ~0ull, s.regs.rcx, s.regs.rsi, s.regs.rdi, f.host, f.port_log};
}
// The same string with and without pages and bursts: everything the guest and the
// port see must be the same.
run_result check_same(const guest_state& s, const io_detail& io, paged_io setup, const io_segments& segs = {},
                      std::uint64_t max_reps = ~0ull) {
    paged_io slow = setup, fast = setup;
    slow.bursts = false;
    slow.page_fn = false;
    const run_result a = run_string(slow, s, io, segs, max_reps);
    const run_result b = run_string(fast, s, io, segs, max_reps);
    CHECK(a.ok == b.ok);
    CHECK(a.remaining == b.remaining);
    CHECK(a.rcx == b.rcx);
    CHECK(a.rsi == b.rsi);
    CHECK(a.rdi == b.rdi);
    CHECK(a.log == b.log);
    CHECK(a.host == b.host);
    return b;
}
} // namespace

TEST_CASE("io emulation: REP INSW as bursts, one translation per page") {
    paged_io f;
    f.fill();
    f.block_limit = 100;  // e.g. the end of a device buffer: the burst goes on after it
    auto s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rdi = 0x3000 - 128;  // 64 words in page 2, 192 in page 3
    s.regs.rcx = 256;
    const io_detail io = port_io(0x1f0, 2, true, true, true, 64);
    auto r = emulate_io(s, io, f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(r->remaining == 0);
    CHECK(s.regs.rcx == 0);
    CHECK(s.regs.rdi == 0x3000 + 384);
    CHECK(f.page_calls == 2);
    CHECK(f.element_calls == 0);
    CHECK(f.block_calls == 3);  // 64 | 100 + 92
    REQUIRE(f.port_log.size() == 256);
    for (unsigned i = 0; i < 256; ++i) {
        std::uint16_t w = 0;
        std::memcpy(&w, f.at(0x3000 - 128 + 2 * i), 2);
        CHECK(w == static_cast<std::uint16_t>(f.port_log[i]));
    }
    paged_io setup;
    setup.fill();
    setup.block_limit = 100;
    check_same(initial_state(guest_mode::long64, 0x1000), io, setup);
}

TEST_CASE("io emulation: REP strings a page at a time match element by element") {
    paged_io setup;
    setup.fill();
    for (const std::uint8_t size : {1, 2, 4})
        for (const bool in : {false, true})
            for (const bool down : {false, true})
                for (const std::uint64_t start : {0x2000ull, 0x2ffeull, 0x2fffull, 0x3001ull, 0x4ff0ull}) {
                    CAPTURE(size);
                    CAPTURE(in);
                    CAPTURE(down);
                    CAPTURE(start);
                    auto s = initial_state(guest_mode::long64, 0x1000);
                    if (down) s.rflags |= 1u << 10;
                    (in ? s.regs.rdi : s.regs.rsi) = down ? start + 0x6000 : start;
                    s.regs.rcx = 3000;  // crosses a page or two either way, straddling elements too
                    const run_result r = check_same(s, port_io(0x1f0, size, in, true, true, 64), setup);
                    CHECK(r.ok);
                    CHECK(r.rcx == 0);
                }
    // Bursts that take a few elements at a time, and a port that takes none.
    for (const std::size_t limit : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
        paged_io p = setup;
        p.block_limit = limit;
        auto s = initial_state(guest_mode::long64, 0x1000);
        s.regs.rsi = 0x2f00;
        s.regs.rcx = 600;
        CHECK(check_same(s, port_io(0x1f0, 2, false, true, true, 64), p).rcx == 0);
    }
}

TEST_CASE("io emulation: a fault mid-string leaves RCX and the index at the faulting element") {
    paged_io setup;
    setup.fill();
    setup.unmapped = 1u << 4;  // page 4 faults
    for (const bool in : {false, true}) {
        CAPTURE(in);
        auto s = initial_state(guest_mode::long64, 0x1000);
        (in ? s.regs.rdi : s.regs.rsi) = 0x4000 - 64;
        s.regs.rcx = 100;
        const run_result r = check_same(s, port_io(0x1f0, 2, in, true, true, 64), setup);
        CHECK_FALSE(r.ok);
        CHECK(r.rcx == 100 - 32);
        CHECK((in ? r.rdi : r.rsi) == 0x4000);
        // The 32 elements before it went through the port (INS reads the faulting
        // element's port value before its memory write fails, as before).
        CHECK(r.log.size() == (in ? 33u : 32u));
    }
    // DF=1 into the faulting page from above; a word straddling into it faults as a whole.
    auto s = initial_state(guest_mode::long64, 0x1000);
    s.rflags |= 1u << 10;
    s.regs.rsi = 0x5000 + 6;
    s.regs.rcx = 10;
    run_result r = check_same(s, port_io(0x80, 2, false, true, true, 64), setup);
    CHECK_FALSE(r.ok);
    CHECK(r.rcx == 6);  // 0x5006, 0x5004, 0x5002, 0x5000 done; 0x4ffe faults
    CHECK(r.rsi == 0x4ffe);
    s.rflags &= ~(1ull << 10);
    s.regs.rsi = 0x3ffc;
    s.regs.rcx = 4;
    r = check_same(s, port_io(0x80, 4, false, true, true, 64), setup);
    CHECK_FALSE(r.ok);
    CHECK(r.rcx == 3);
    CHECK(r.rsi == 0x4000 - 4 + 4);
    s.regs.rsi = 0x3ffe;
    s.regs.rcx = 4;
    r = check_same(s, port_io(0x80, 4, false, true, true, 64), setup);
    CHECK_FALSE(r.ok);
    CHECK(r.rcx == 4);  // the first element straddles into page 4
    CHECK(r.rsi == 0x3ffe);
}

TEST_CASE("io emulation: REP strings through device pages go element by element") {
    paged_io setup;
    setup.fill();
    setup.device = 1u << 3;
    auto s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rdi = 0x3f00;
    s.regs.rcx = 0x100;  // 0x80 words in page 3 (device), 0x80 in page 4 (RAM)
    paged_io f = setup;
    auto r = emulate_io(s, port_io(0x1f0, 2, true, true, true, 64), f.ports(), f.memory());
    REQUIRE(r.ok());
    CHECK(f.element_calls == 0x80);
    CHECK(f.block_calls == 1);
    check_same(initial_state(guest_mode::long64, 0x1000), port_io(0x1f0, 2, true, true, true, 64), setup);
}

TEST_CASE("io emulation: 16- and 32-bit address sizes, segment limits, the exit budget") {
    paged_io setup;
    setup.fill();
    // 16-bit addressing: SI wraps at 64 KiB within the segment (base 0x2000 + SI).
    auto s = initial_state(guest_mode::protected32, 0x1000);
    s.regs.rsi = 0xabcd'fff0;
    s.regs.rcx = 0x1234'0020;
    const io_segments seg16{0x2000, 0, 0, 0xffff, 0, 0xffff};
    run_result r = check_same(s, port_io(0x80, 2, false, true, true, 16), setup, seg16);
    CHECK(r.ok);
    CHECK(r.rcx == 0x1234'0000);
    CHECK(r.rsi == 0xabcd'0030);  // upper bits kept
    CHECK(r.log.size() == 0x20);
    // In 64-bit code with a 32-bit address size: ESI zero-extends and wraps at 4 GiB.
    s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rsi = 0x1'0000'2ff0;
    s.regs.rcx = 0x10;
    r = check_same(s, port_io(0x80, 4, false, true, true, 32), setup);
    CHECK(r.ok);
    CHECK(r.rsi == 0x3030);
    CHECK(r.rcx == 0);
    // A limit: the elements below it run, the one beyond faults with #GP (errc::fault).
    s = initial_state(guest_mode::protected32, 0x1000);
    s.regs.rdi = 0x2ff0;
    s.regs.rcx = 0x40;
    r = check_same(s, port_io(0x1f0, 2, true, true, true, 32), setup, {0, 0, 0, ~0ull, 0, 0x3003});
    CHECK_FALSE(r.ok);
    CHECK(r.rdi == 0x3004);
    CHECK(r.rcx == 0x40 - 10);
    // Expand-down: offsets above the limit only; DF=1 walks down into the limit.
    s.rflags |= 1u << 10;
    s.regs.rdi = 0x3010;
    s.regs.rcx = 0x40;
    r = check_same(s, port_io(0x1f0, 4, true, true, true, 32), setup, {0, 0, 0, ~0ull, 0x3000, 0xffffffff});
    CHECK_FALSE(r.ok);
    CHECK(r.rdi == 0x2ffc);
    CHECK(r.rcx == 0x40 - 5);
    // segments_of: 64-bit code ignores DS/ES; otherwise their limits and expand-down.
    auto st = initial_state(guest_mode::protected32, 0x1000);
    st[seg::ds].base = 0x1000;
    st[seg::ds].limit = 0xfff;
    st[seg::es].access = (st[seg::es].access & ~0xfu) | 0x7;  // data, expand-down, writable, accessed
    st[seg::es].limit = 0x7fff;
    const io_segments g = segments_of(st);
    CHECK(g.source_base == 0x1000);
    CHECK(g.source_first == 0);
    CHECK(g.source_last == 0xfff);
    CHECK(g.es_first == 0x8000);
    CHECK(g.es_last == ((st[seg::es].access & ar::db) ? 0xffffffffull : 0xffffull));
    const io_segments g64 = segments_of(initial_state(guest_mode::long64, 0x1000));
    CHECK(g64.source_base == 0);
    CHECK(g64.source_last == ~0ull);
    // The exit budget stops a long string on the same element either way.
    s = initial_state(guest_mode::long64, 0x1000);
    s.regs.rsi = 0x2100;
    s.regs.rcx = 5000;
    r = check_same(s, port_io(0x80, 1, false, true, true, 64), setup, {}, 4096);
    CHECK(r.remaining == 5000 - 4096);
    CHECK(r.rcx == 5000 - 4096);
}
