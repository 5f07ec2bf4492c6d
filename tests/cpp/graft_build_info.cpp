// Test-only op for the aarch64 grafts of the native depthwise kernel: reports the
// ISA features this library was compiled with (the grafts compile every TU with the
// same flags), so a test can tell the NEON fp16-arithmetic build from the plain one.
#include <torch/library.h>

namespace {
bool fp16_vector_arithmetic() {
#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
  return true;
#else
  return false;
#endif
}
}  // namespace

TORCH_LIBRARY(graft_build_info, m) {
  m.def("fp16_vector_arithmetic() -> bool", &fp16_vector_arithmetic);
}
