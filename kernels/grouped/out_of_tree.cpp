// Out-of-tree operators of the native CPU grouped convolution kernel (built by
// recipe/addon.py -- the add-on wheel and `python build.py kernel` -- with
// -DDWCONV_OUT_OF_TREE, into the same library as the native depthwise kernel).
//
// After torch.ops.load_library(path):
//   * native_gconv::grouped_conv2d(input, weight, bias, stride, padding, dilation,
//     groups) -> output (the input's memory format): ONE call for the whole
//     grouped conv;
//   * native_gconv::grouped_conv2d_backward(grad_output, input, weight, stride,
//     padding, dilation, groups, output_mask) -> (grad_input, grad_weight,
//     grad_bias) (undefined = None where the mask is false).
// The routing shim (kernels/depthwise/out_of_tree.cpp) sends grouped F.conv1d /
// F.conv2d calls and their backward here when the routing policy picks the native
// kernel. In-tree there are no such operators: ConvBackend::CpuGrouped2d calls the
// same functions inside aten::_convolution / aten::convolution_backward.

#include <ATen/native/GroupedConv2dNative.h>

#include <ATen/core/Tensor.h>
#include <ATen/ops/sum.h>
#include <Registration.h>
#include <torch/library.h>

#include <array>
#include <c10/util/Optional.h>
#include <tuple>

namespace {

using at::IntArrayRef;
using at::Tensor;

Tensor grouped_forward(const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias,
                       IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
                       int64_t groups) {
  return at::native::grouped_conv2d_cpu(input, weight, bias, stride, padding, dilation, groups);
}

std::tuple<Tensor, Tensor, Tensor> grouped_backward(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight, IntArrayRef stride,
    IntArrayRef padding, IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  auto [grad_input, grad_weight] = at::native::grouped_conv2d_backward_cpu(
      grad_output, input, weight, stride, padding, dilation, groups,
      {output_mask[0], output_mask[1]});
  Tensor grad_bias;
  if (output_mask[2]) grad_bias = grad_output.sum(IntArrayRef{0, 2, 3});
  return std::make_tuple(grad_input, grad_weight, grad_bias);
}

}  // namespace

namespace {

// Run by torch_grouped_conv_register() (addon/csrc/Registration.h), not at load time: a
// registration the running torch refuses throws, and is undone there as a whole.
void register_operators(recipe_registration::Libraries& libs) {
  using recipe_registration::library;
  auto& ops = library(libs, torch::Library::DEF, "native_gconv", c10::optional<c10::DispatchKey>(),
                      __FILE__, __LINE__);
  ops.def("grouped_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
          "int[2] padding, int[2] dilation, int groups) -> Tensor");
  ops.def("grouped_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, "
          "int[2] stride, int[2] padding, int[2] dilation, int groups, bool[3] output_mask) "
          "-> (Tensor, Tensor, Tensor)");
  library(libs, torch::Library::IMPL, "native_gconv", c10::make_optional(c10::DispatchKey::CPU),
          __FILE__, __LINE__)
      .impl("grouped_conv2d", TORCH_FN(grouped_forward))
      .impl("grouped_conv2d_backward", TORCH_FN(grouped_backward));
}

const bool kRecorded = recipe_registration::add(register_operators);

}  // namespace
