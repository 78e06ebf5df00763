// Corpus sizes: full in the normal build; smaller under ASan/UBSan (a debug build whose
// purpose is finding memory errors and UB, not covering more encodings).
#pragma once

namespace insn_test {
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
inline constexpr unsigned scale_down = sanitized ? 4 : 1;
} // namespace insn_test
