// Cooperative fibers on Boost.Context's fcontext (jump_fcontext/make_fcontext from
// libboost_context.a: plain assembly, so the same objects link hosted and on metal).
// vCPUs and in-hypervisor backends each run on one.
#pragma once
#include <cstddef>

#if HV_HOSTED
#include <boost/context/detail/fcontext.hpp>
#else
// The declarations of boost/context/detail/fcontext.hpp, without Boost's hosted headers.
namespace boost::context::detail {
using fcontext_t = void*;
struct transfer_t {
    fcontext_t fctx;
    void* data;
};
extern "C" transfer_t jump_fcontext(fcontext_t const to, void* vp);
extern "C" fcontext_t make_fcontext(void* sp, std::size_t size, void (*fn)(transfer_t));
} // namespace boost::context::detail
#endif

namespace hv {

class fiber {
public:
    using entry_fn = void (*)(fiber& self, void* arg);

    fiber() = default;
    fiber(const fiber&) = delete;
    fiber& operator=(const fiber&) = delete;

    // `stack` must stay valid while the fiber lives; it grows down from stack + size.
    void init(void* stack, std::size_t size, entry_fn fn, void* arg) {
        namespace fc = boost::context::detail;
        fn_ = fn;
        arg_ = arg;
        finished_ = false;
        ctx_ = fc::make_fcontext(static_cast<char*>(stack) + size, size, &trampoline);
    }

    // Runs the fiber until it yields or returns. Must not be called from inside itself.
    void resume() {
        namespace fc = boost::context::detail;
        ctx_ = fc::jump_fcontext(ctx_, this).fctx;
    }

    // From inside the fiber: back to whoever resumed it.
    void yield() {
        namespace fc = boost::context::detail;
        caller_ = fc::jump_fcontext(caller_, nullptr).fctx;
    }

    [[nodiscard]] bool finished() const { return finished_; }

private:
    static void trampoline(boost::context::detail::transfer_t t) {
        auto* self = static_cast<fiber*>(t.data);
        self->caller_ = t.fctx;
        self->fn_(*self, self->arg_);
        self->finished_ = true;
        for (;;) self->yield();
    }

    void* ctx_ = nullptr;
    void* caller_ = nullptr;
    entry_fn fn_ = nullptr;
    void* arg_ = nullptr;
    bool finished_ = true;
};

} // namespace hv
