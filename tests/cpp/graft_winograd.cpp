// Graft: the PATCHED NEON depthwise 3x3 Winograd kernel (cpu/DepthwiseConvKernel.cpp of the
// patched 2.6.0 tree) compiled into a test library, exposed as graft_winograd::conv2d.
// The kernel file is included whole so its anonymous-namespace entry point is reachable;
// its dispatch registration is neutralised because the wheel already owns that stub.
#include <ATen/native/DispatchStub.h>
#undef REGISTER_DISPATCH
#define REGISTER_DISPATCH(...)
#undef ALSO_REGISTER_AVX512_DISPATCH
#define ALSO_REGISTER_AVX512_DISPATCH(...)

#include GRAFT_KERNEL_SOURCE

#include <torch/library.h>

namespace {

at::Tensor winograd_conv2d(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, std::vector<int64_t> padding) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3,
              "graft_winograd.conv2d: 4-D input and 3x3 depthwise weight expected");
  const int64_t groups = input.size(1);
  return at::native::_convolution_depthwise3x3_winograd(
      input.contiguous(), weight.contiguous(), bias ? bias->contiguous() : at::Tensor(),
      /*stride=*/{1, 1}, padding, groups);
}

// Which SIMD body the patched guards compiled in: "neon", "rvv" or "none".
std::string simd_body() {
#if defined(__ARM_NEON__) || defined(__ARM_NEON)
  return "neon";
#elif defined(__riscv_v_intrinsic) && __riscv_v_intrinsic >= 12000
  return "rvv";
#else
  return "none";
#endif
}

}  // namespace

TORCH_LIBRARY(graft_winograd, m) {
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] padding) -> Tensor", &winograd_conv2d);
  m.def("simd_body() -> str", &simd_body);
}
