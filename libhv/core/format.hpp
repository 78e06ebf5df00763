// Type-safe formatting without libc: "{}" placeholders with an optional spec
// "{:[#][0][width][x|X|d|b|c|s]}", written to any sink (serial, buffer, test string).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace hv::fmt {

struct sink {
    void (*put)(void* ctx, const char* s, std::size_t n);
    void* ctx;
    void write(const char* s, std::size_t n) const { put(ctx, s, n); }
};

struct arg {
    enum class kind : std::uint8_t { s64, u64, chr, str, ptr, boolean } k;
    union {
        std::int64_t i;
        std::uint64_t u;
        char c;
        const void* p;
        bool b;
    };
    std::string_view s{};

    template <class T>
    static constexpr arg from(const T& v) {
        arg a{};
        using U = std::remove_cvref_t<T>;
        if constexpr (std::is_same_v<U, bool>) { a.k = kind::boolean; a.b = v; }
        else if constexpr (std::is_same_v<U, char>) { a.k = kind::chr; a.c = v; }
        else if constexpr (std::is_enum_v<U>) { a.k = kind::u64; a.u = static_cast<std::uint64_t>(v); }
        else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) { a.k = kind::s64; a.i = v; }
        else if constexpr (std::is_integral_v<U>) { a.k = kind::u64; a.u = v; }
        else if constexpr (std::is_convertible_v<const U&, std::string_view>) { a.k = kind::str; a.s = std::string_view(v); }
        else if constexpr (std::is_pointer_v<U>) { a.k = kind::ptr; a.p = reinterpret_cast<const void*>(v); }
        else static_assert(sizeof(U) == 0, "hv::fmt: unsupported argument type");
        return a;
    }
};

// Returns the number of characters the complete output has (even if a bounded sink cut it).
std::size_t vformat(const sink& out, std::string_view f, const arg* args, std::size_t nargs);

template <class... Args>
std::size_t format(const sink& out, std::string_view f, const Args&... args) {
    if constexpr (sizeof...(Args) == 0) {
        return vformat(out, f, nullptr, 0);
    } else {
        const arg a[] = {arg::from(args)...};
        return vformat(out, f, a, sizeof...(Args));
    }
}

// Bounded buffer formatting; always NUL-terminates when n > 0. Returns the untruncated length.
template <class... Args>
std::size_t format_to(char* buf, std::size_t n, std::string_view f, const Args&... args) {
    struct state { char* b; std::size_t n; std::size_t len; } st{buf, n, 0};
    sink s{[](void* c, const char* p, std::size_t k) {
               auto* st = static_cast<state*>(c);
               for (std::size_t i = 0; i < k; ++i, ++st->len)
                   if (st->len + 1 < st->n) st->b[st->len] = p[i];
           },
           &st};
    std::size_t len = format(s, f, args...);
    if (n) buf[len < n ? len : n - 1] = '\0';
    return len;
}

} // namespace hv::fmt
