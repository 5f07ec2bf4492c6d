// Graft: PyTorch 2.6.0's own XNNPACK convolution path (aten/src/ATen/native/xnnpack/*.cpp,
// the code the routing patches now send grouped fp32 inference convs to), compiled into a
// test library next to these wrappers, running on the XNNPACK inside the official wheel's
// libtorch_cpu.so (it exports the xnn_* C API).
#include <ATen/ATen.h>
#include <ATen/native/xnnpack/Engine.h>
#include <torch/library.h>

namespace {

bool usable(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
            std::vector<int64_t> padding, std::vector<int64_t> stride, std::vector<int64_t> dilation,
            int64_t groups) {
  std::optional<at::IntArrayRef> bias_sizes;
  if (bias) bias_sizes = bias->sizes();
  return at::native::xnnpack::use_convolution2d(input, weight, bias_sizes, padding, stride,
                                                dilation, groups, /*transposed=*/false);
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  std::vector<int64_t> padding, std::vector<int64_t> stride,
                  std::vector<int64_t> dilation, int64_t groups) {
  return at::native::xnnpack::convolution2d(input, weight, bias ? *bias : at::Tensor(), padding,
                                            stride, dilation, groups);
}

}  // namespace

TORCH_LIBRARY(graft_xnnpack, m) {
  m.def("usable(Tensor input, Tensor weight, Tensor? bias, int[] padding, int[] stride, int[] dilation, int groups) -> bool", &usable);
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] padding, int[] stride, int[] dilation, int groups) -> Tensor", &conv2d);
}
