// The few C symbols a freestanding g++ build still refers to.
#include <cstddef>
#include <cstdint>
#include "libhv/rt/runtime.hpp"

// These must not be compiled into calls to themselves.
#pragma GCC optimize("no-tree-loop-distribute-patterns")

extern "C" {

// Eight bytes per iteration, then the tail: Bochs counts every REP iteration as an
// instruction, so loading a guest kernel with MOVSB cost a tick per byte.
void* memcpy(void* dst, const void* src, std::size_t n) {
    void* d = dst;
    std::size_t qwords = n / 8, rest = n % 8;
    asm volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(qwords) : : "memory");
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(rest) : : "memory");
    return dst;
}

void* memmove(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    auto* s = static_cast<const unsigned char*>(src);
    if (n == 0 || d <= s || d >= s + n) return memcpy(dst, src, n);
    unsigned char* d_last = d + n - 1;
    const unsigned char* s_last = s + n - 1;
    asm volatile("std; rep movsb; cld" : "+D"(d_last), "+S"(s_last), "+c"(n) : : "memory");
    return dst;
}

void* memset(void* dst, int c, std::size_t n) {
    void* d = dst;
    std::size_t qwords = n / 8, rest = n % 8;
    const std::uint64_t pattern = 0x0101010101010101ull * static_cast<std::uint8_t>(c);
    asm volatile("rep stosq" : "+D"(d), "+c"(qwords) : "a"(pattern) : "memory");
    asm volatile("rep stosb" : "+D"(d), "+c"(rest) : "a"(pattern) : "memory");
    return dst;
}

int memcmp(const void* a, const void* b, std::size_t n) {
    auto* x = static_cast<const unsigned char*>(a);
    auto* y = static_cast<const unsigned char*>(b);
    for (std::size_t i = 0; i < n; ++i)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

std::size_t strlen(const char* s) {
    std::size_t n = 0;
    while (s[n]) ++n;
    return n;
}

void __cxa_pure_virtual() { hv::rt::panic("pure virtual function called"); }

// Boost.Context's make_fcontext calls _exit when a context function returns.
[[noreturn]] void _exit(int code) { hv::rt::panic("fiber context returned (exit {})", code); }

int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
void* __dso_handle = nullptr;
}

void operator delete(void*, std::size_t) noexcept { hv::rt::panic("operator delete: libhv has no heap"); }
void operator delete(void*) noexcept { hv::rt::panic("operator delete: libhv has no heap"); }

extern "C" void* memchr(const void* s, int c, std::size_t n) {
    auto* p = static_cast<const unsigned char*>(s);
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] == static_cast<unsigned char>(c)) return const_cast<unsigned char*>(p + i);
    return nullptr;
}

// libstdc++'s header-only parts report misuse through these; here that is a bug: panic.
namespace std {
[[noreturn]] void __throw_out_of_range_fmt(const char* what, ...) { hv::rt::panic("std: out of range: {}", what); }
[[noreturn]] void __throw_out_of_range(const char* what) { hv::rt::panic("std: out of range: {}", what); }
[[noreturn]] void __throw_length_error(const char* what) { hv::rt::panic("std: length error: {}", what); }
[[noreturn]] void __throw_bad_optional_access() { hv::rt::panic("std: bad optional access"); }
[[noreturn]] void __throw_bad_function_call() { hv::rt::panic("std: bad function call"); }
} // namespace std
