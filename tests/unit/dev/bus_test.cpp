#include <doctest/doctest.h>
#include "libhv/dev/bus.hpp"
