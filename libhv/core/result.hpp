// Fallible work returns hv::result<T>: validate, then commit.
#pragma once
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace hv {

enum class errc : std::int32_t {
    ok = 0,
    invalid_argument,
    out_of_range,
    no_memory,
    fault,          // an address did not translate or hit a hole
    not_supported,
    busy,
    permission,
    bad_format,
    not_found,
    would_block,
    overflow,
    exists,
};

constexpr const char* to_string(errc e) {
    switch (e) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::out_of_range: return "out of range";
    case errc::no_memory: return "out of memory";
    case errc::fault: return "fault";
    case errc::not_supported: return "not supported";
    case errc::busy: return "busy";
    case errc::permission: return "permission denied";
    case errc::bad_format: return "bad format";
    case errc::not_found: return "not found";
    case errc::would_block: return "would block";
    case errc::overflow: return "overflow";
    case errc::exists: return "already exists";
    }
    return "?";
}

// `what` always points at a string with static storage: errors never allocate.
struct error {
    errc code;
    const char* what;
};

template <class T>
class [[nodiscard]] result {
public:
    result(T v) : ok_{true} { new (&storage_.value) T(std::move(v)); }
    result(error e) : ok_{false} { storage_.err = e; }
    result(const result& o) : ok_{o.ok_} {
        if (ok_) new (&storage_.value) T(o.storage_.value); else storage_.err = o.storage_.err;
    }
    result& operator=(const result& o) {
        if (this != &o) { this->~result(); new (this) result(o); }
        return *this;
    }
    ~result() { if (ok_) storage_.value.~T(); }

    [[nodiscard]] bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    T& value() { return storage_.value; }
    const T& value() const { return storage_.value; }
    T& operator*() { return storage_.value; }
    const T& operator*() const { return storage_.value; }
    T* operator->() { return &storage_.value; }
    const T* operator->() const { return &storage_.value; }
    // A failure never reads as success once turned into a status (HV_TRY, `return r.err()`).
    [[nodiscard]] error err() const { return ok_ ? error{errc::ok, "ok"} : failure(); }
    [[nodiscard]] errc code() const { return ok_ ? errc::ok : failure().code; }

private:
    error failure() const {
        return storage_.err.code != errc::ok ? storage_.err : error{errc::fault, "failure without an error code"};
    }
    union U {
        U() {}
        ~U() {}
        T value;
        error err;
    } storage_;
    bool ok_;
};

template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(error e) : err_{e} {}
    [[nodiscard]] bool ok() const { return err_.code == errc::ok; }
    explicit operator bool() const { return ok(); }
    [[nodiscard]] error err() const { return err_; }
    [[nodiscard]] errc code() const { return err_.code; }

private:
    error err_{errc::ok, "ok"};
};

using status = result<void>;

constexpr error fail(errc code, const char* what) { return error{code, what}; }

} // namespace hv

// Propagate an error from an expression yielding hv::result<...>.
#define HV_TRY(expr)                                    \
    do {                                                \
        auto hv_try_r_ = (expr);                        \
        if (!hv_try_r_.ok()) return hv_try_r_.err();    \
    } while (0)
