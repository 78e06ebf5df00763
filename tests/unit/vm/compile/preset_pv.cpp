#include "libhv/vm/policy.hpp"
constexpr auto chosen = hv::vm::preset<"pv">();
