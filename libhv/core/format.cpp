#include "libhv/core/format.hpp"

namespace hv::fmt {
namespace {

struct spec {
    bool alt = false;
    char fill = ' ';
    unsigned width = 0;
    char type = 0;
};

// Parses the text between ':' and '}'; unknown characters are ignored.
spec parse_spec(std::string_view s) {
    spec sp;
    std::size_t i = 0;
    if (i < s.size() && s[i] == '#') { sp.alt = true; ++i; }
    if (i < s.size() && s[i] == '0') { sp.fill = '0'; ++i; }
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') sp.width = sp.width * 10 + unsigned(s[i++] - '0');
    if (i < s.size()) sp.type = s[i];
    return sp;
}

struct counter {
    const sink& out;
    std::size_t n = 0;
    void put(const char* s, std::size_t k) { out.write(s, k); n += k; }
    void pad(char c, std::size_t k) { while (k--) put(&c, 1); }
};

void put_padded(counter& c, const spec& sp, const char* prefix, std::string_view body, bool numeric) {
    std::size_t plen = 0;
    while (prefix[plen]) ++plen;
    std::size_t len = plen + body.size();
    std::size_t padding = sp.width > len ? sp.width - len : 0;
    if (numeric && sp.fill == '0') {
        c.put(prefix, plen);
        c.pad('0', padding);
    } else {
        c.pad(' ', padding);
        c.put(prefix, plen);
    }
    c.put(body.data(), body.size());
}

void put_unsigned(counter& c, const spec& sp, std::uint64_t v, bool negative) {
    unsigned base = 10;
    const char* digits = "0123456789abcdef";
    const char* prefix = negative ? "-" : "";
    switch (sp.type) {
    case 'x': base = 16; if (sp.alt) prefix = "0x"; break;
    case 'X': base = 16; digits = "0123456789ABCDEF"; if (sp.alt) prefix = "0x"; break;
    case 'b': base = 2; if (sp.alt) prefix = "0b"; break;
    case 'o': base = 8; if (sp.alt) prefix = "0"; break;
    default: break;
    }
    char buf[64];
    std::size_t i = sizeof buf;
    do {
        buf[--i] = digits[v % base];
        v /= base;
    } while (v);
    put_padded(c, sp, prefix, std::string_view(buf + i, sizeof buf - i), true);
}

void put_arg(counter& c, const spec& sp, const arg& a) {
    switch (a.k) {
    case arg::kind::s64:
        if (sp.type == 'x' || sp.type == 'X' || sp.type == 'b' || sp.type == 'o')
            put_unsigned(c, sp, static_cast<std::uint64_t>(a.i), false);
        else if (a.i < 0)
            put_unsigned(c, sp, ~static_cast<std::uint64_t>(a.i) + 1, true);
        else
            put_unsigned(c, sp, static_cast<std::uint64_t>(a.i), false);
        break;
    case arg::kind::u64:
        if (sp.type == 'c') { char ch = char(a.u); put_padded(c, sp, "", {&ch, 1}, false); }
        else put_unsigned(c, sp, a.u, false);
        break;
    case arg::kind::chr:
        if (sp.type == 'x' || sp.type == 'd' || sp.type == 'X') put_unsigned(c, sp, std::uint8_t(a.c), false);
        else put_padded(c, sp, "", {&a.c, 1}, false);
        break;
    case arg::kind::str:
        put_padded(c, sp, "", a.s, false);
        break;
    case arg::kind::ptr: {
        spec p = sp;
        p.alt = true;
        p.type = 'x';
        put_unsigned(c, p, reinterpret_cast<std::uintptr_t>(a.p), false);
        break;
    }
    case arg::kind::boolean:
        put_padded(c, sp, "", a.b ? "true" : "false", false);
        break;
    }
}

} // namespace

std::size_t vformat(const sink& out, std::string_view f, const arg* args, std::size_t nargs) {
    counter c{out};
    std::size_t next = 0;
    std::size_t lit = 0;
    for (std::size_t i = 0; i < f.size(); ++i) {
        char ch = f[i];
        if ((ch == '{' || ch == '}') && i + 1 < f.size() && f[i + 1] == ch) {
            c.put(f.data() + lit, i + 1 - lit);
            lit = ++i + 1;
            continue;
        }
        if (ch != '{') continue;
        std::size_t close = f.find('}', i);
        if (close == std::string_view::npos) break;
        c.put(f.data() + lit, i - lit);
        std::string_view inner = f.substr(i + 1, close - i - 1);
        spec sp = inner.size() && inner[0] == ':' ? parse_spec(inner.substr(1)) : spec{};
        if (next < nargs) put_arg(c, sp, args[next++]);
        else c.put("{?}", 3);
        i = close;
        lit = close + 1;
    }
    if (lit < f.size()) c.put(f.data() + lit, f.size() - lit);
    return c.n;
}

} // namespace hv::fmt
