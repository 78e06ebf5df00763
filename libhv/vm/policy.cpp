#include "libhv/vm/policy.hpp"

namespace hv::vm {

namespace {

using loader::protocol;

// The policy's preferred start if `image` offers it, else protocol::none.
protocol preferred_offered(const policy& p, const loader::image_info& info, std::span<const std::byte> image) {
    switch (p.boot) {
    case boot_protocol::loader_choice: return protocol::none;
    case boot_protocol::multiboot:
        if (info.multiboot2) return protocol::multiboot2;
        return info.multiboot1 ? protocol::multiboot1 : protocol::none;
    case boot_protocol::pvh: return info.pvh ? protocol::pvh : protocol::none;
    case boot_protocol::linux_bzimage: return info.linux_bzimage ? protocol::linux_bzimage : protocol::none;
    case boot_protocol::real_mode:
        // A bzImage's first sector is a boot sector too, one that only says to use a boot loader.
        if (info.linux_bzimage || loader::real_mode_image_problem(image) || real_mode_refusal(p)) return protocol::none;
        return protocol::real_mode;
    }
    return protocol::none;
}

// Why the image's own entry is taken instead of the policy's preferred start.
const char* preference_not_offered(boot_protocol b) {
    switch (b) {
    case boot_protocol::loader_choice: return "the image's first entry; the policy prefers none";
    case boot_protocol::multiboot: return "the policy's multiboot needs a multiboot header";
    case boot_protocol::pvh: return "the policy's pvh needs a PVH note";
    case boot_protocol::linux_bzimage: return "the policy's linux needs a bzImage";
    case boot_protocol::real_mode: return "the policy's real mode needs a flat image";
    }
    return "?";
}

// Error messages have static storage: the context and the reason are joined at compile time.
template <std::size_t A, std::size_t B>
struct joined {
    char text[A + B - 1];
};
template <std::size_t A, std::size_t B>
consteval joined<A, B> join(const char (&a)[A], const char (&b)[B]) {
    joined<A, B> j{};
    for (std::size_t i = 0; i + 1 < A; ++i) j.text[i] = a[i];
    for (std::size_t i = 0; i < B; ++i) j.text[A - 1 + i] = b[i];
    return j;
}

constexpr char no_entry_not_flat[] =
    "the guest has neither a multiboot header, a PVH note nor a bzImage header, and is no flat real-mode image "
    "either: ";
constexpr char flat_refused[] =
    "the guest is a flat image without an entry of its own (no multiboot header, PVH note or bzImage header), "
    "which starts only in real mode: ";

namespace rm = loader::real_mode_problem;
constexpr auto no_entry_elf = join(no_entry_not_flat, rm::elf);
constexpr auto no_entry_too_short = join(no_entry_not_flat, rm::too_short);
constexpr auto no_entry_too_large = join(no_entry_not_flat, rm::too_large);
constexpr auto no_entry_no_signature = join(no_entry_not_flat, rm::no_signature);
constexpr auto flat_no_emulated_pc = join(flat_refused, real_mode_refused::no_emulated_pc);

// `reason` with its context, or `reason` alone if it is none of the known ones.
const char* in_context(const char* reason) {
    struct known {
        const char* reason;
        const char* message;
    };
    const known table[] = {{rm::elf, no_entry_elf.text},
                           {rm::too_short, no_entry_too_short.text},
                           {rm::too_large, no_entry_too_large.text},
                           {rm::no_signature, no_entry_no_signature.text},
                           {real_mode_refused::no_emulated_pc, flat_no_emulated_pc.text}};
    for (const known& k : table)
        if (k.reason == reason) return k.message;
    return reason;
}

} // namespace

result<entry_choice> choose_entry(const policy& p, std::span<const std::byte> image) {
    auto info = loader::probe_entries(image);
    HV_TRY(info);
    if (const protocol preferred = preferred_offered(p, *info, image); preferred != protocol::none)
        return entry_choice{preferred, "the policy's preferred start", *info};
    if (info->offers_entry()) return entry_choice{info->first_offered(), preference_not_offered(p.boot), *info};
    if (const char* why = loader::real_mode_image_problem(image)) return fail(errc::bad_format, in_context(why));
    if (const char* why = real_mode_refusal(p)) return fail(errc::not_supported, in_context(why));
    return entry_choice{protocol::real_mode, "a flat image without an entry of its own", *info};
}

} // namespace hv::vm
