#include "libhv/cpu/io_emul.hpp"

namespace hv::cpu {

namespace {
constexpr std::uint64_t mask_of(unsigned bits) { return bits >= 64 ? ~0ull : (1ull << bits) - 1; }
constexpr std::uint64_t page_size = 4096;
constexpr std::uint64_t min(std::uint64_t a, std::uint64_t b) { return a < b ? a : b; }

// Writes the low `bits` of a register, keeping the rest (16-bit) or zero-extending (32-bit).
void set_reg(std::uint64_t& r, std::uint64_t v, unsigned bits) {
    if (bits == 32) r = v & 0xffffffffull;
    else r = (r & ~mask_of(bits)) | (v & mask_of(bits));
}

// The offsets a data segment allows, from its limit and access rights (SDM 3.4.5.1).
void segment_range(const segment& sg, std::uint64_t& first, std::uint64_t& last) {
    const bool expand_down = (sg.access & ar::s) && !(ar::type(sg.access) & 0x8) && (ar::type(sg.access) & 0x4);
    if (expand_down) {
        first = std::uint64_t{sg.limit} + 1;
        last = (sg.access & ar::db) ? 0xffffffffull : 0xffffull;
    } else {
        first = 0;
        last = sg.limit;
    }
}
} // namespace

io_segments segments_of(const guest_state& s) {
    const bool code64 = (s.efer & x86::efer::lma) && (s[seg::cs].access & ar::l);
    if (code64) return {};
    io_segments r{s[seg::ds].base, s[seg::es].base};
    segment_range(s[seg::ds], r.source_first, r.source_last);
    segment_range(s[seg::es], r.es_first, r.es_last);
    return r;
}

result<io_outcome> emulate_string_io(guest_state& s, const io_detail& io, const io_ports& ports,
                                     const guest_memory& mem, const io_segments& segs, std::uint64_t max_reps) {
    if (io.size != 1 && io.size != 2 && io.size != 4) return fail(errc::invalid_argument, "I/O size not 1, 2 or 4");
    const std::uint32_t vmask = static_cast<std::uint32_t>(mask_of(io.size * 8u));

    const bool code64 = (s.efer & x86::efer::lma) && (s[seg::cs].access & ar::l);
    const unsigned asz = io.address_size ? io.address_size : (code64 ? 64 : 32);
    const std::uint64_t amask = mask_of(asz);
    const std::uint64_t linear_mask = code64 ? ~0ull : 0xffffffffull;  // outside 64-bit code it wraps at 4 GiB
    const bool down = s.rflags & (1ull << 10);
    const std::uint64_t size = io.size;
    const std::uint64_t count = io.rep ? (s.regs.rcx & amask) : 1;
    const std::uint64_t todo = min(count, max_reps);
    std::uint64_t& index = io.in ? s.regs.rdi : s.regs.rsi;
    const std::uint64_t base = io.in ? segs.es_base : segs.source_base;
    const std::uint64_t first = io.in ? segs.es_first : segs.source_first;
    const std::uint64_t last = io.in ? segs.es_last : segs.source_last;
    const std::uint64_t last_unwrapped = min(last, amask);  // the index wraps beyond amask

    // One element through the port and guest memory at `at` (host address).
    auto element = [&](unsigned char* at) {
        std::uint32_t v = 0;
        if (io.in) {
            v = ports.in(ports.ctx, io.port, io.size) & vmask;
            __builtin_memcpy(at, &v, size);
        } else {
            __builtin_memcpy(&v, at, size);
            ports.out(ports.ctx, io.port, io.size, v & vmask);
        }
    };

    std::uint64_t done = 0;
    const char* fault = nullptr;
    while (done < todo) {
        const std::uint64_t offset = index & amask;
        if (offset < first || offset > last || last - offset < size - 1) {
            fault = "string I/O beyond the segment's limit";
            break;
        }
        const std::uint64_t linear = (base + offset) & linear_mask;
        const std::uint64_t in_page = linear & (page_size - 1);
        // Elements from this one on that stay in its page and segment, without the
        // index wrapping: one translation for all of them.
        std::uint64_t n = 0;
        if (in_page + size <= page_size && last_unwrapped - offset >= size - 1) {
            n = down ? min(in_page / size + 1, (offset - first) / size + 1)
                     : min((page_size - in_page) / size, (last_unwrapped - offset - (size - 1)) / size + 1);
            n = min(n, todo - done);
        }
        auto* host = n && mem.page ? static_cast<unsigned char*>(mem.page(mem.ctx, linear, io.in)) : nullptr;
        if (host) {
            // A burst's elements are in address order: upward strings only.
            bool bursts = !down && (io.in ? ports.in_block != nullptr : ports.out_block != nullptr);
            for (std::uint64_t i = 0; i < n;) {
                if (bursts) {
                    unsigned char* at = host + i * size;
                    const std::uint64_t k = min(io.in ? ports.in_block(ports.ctx, io.port, io.size, at, n - i)
                                                      : ports.out_block(ports.ctx, io.port, io.size, at, n - i),
                                                n - i);
                    i += k;
                    bursts = k != 0;  // none taken: element by element for the rest of the page
                    if (k) continue;
                }
                element(down ? host - i * size : host + i * size);
                ++i;
            }
        } else {
            n = 1;  // a device, a hole, a page-straddling element or a fault
            std::uint32_t v = 0;
            if (io.in) {
                v = ports.in(ports.ctx, io.port, io.size) & vmask;
                if (!mem.write(mem.ctx, linear, &v, io.size)) fault = "INS: guest memory not writable";
            } else if (mem.read(mem.ctx, linear, &v, io.size)) {
                ports.out(ports.ctx, io.port, io.size, v & vmask);
            } else {
                fault = "OUTS: guest memory not readable";
            }
            if (fault) break;
        }
        set_reg(index, down ? offset - n * size : offset + n * size, asz);
        done += n;
    }
    if (io.rep) set_reg(s.regs.rcx, (s.regs.rcx & amask) - done, asz);
    if (fault) return fail(errc::fault, fault);
    return io_outcome{count - done};
}

} // namespace hv::cpu
