// Native CPU grouped 2-D convolution: argument checks, output allocation and the
// DispatchStub definitions. The per-CPU-capability kernels are in
// cpu/GroupedConv2dNativeKernel.cpp.
//
// Kept in the torch-arm-recipe repository as kernels/grouped/GroupedConv2dNative.cpp;
// installed into the PyTorch tree as aten/src/ATen/native/GroupedConv2dNative.cpp.
// Built out of tree too (python build.py kernel, -DDWCONV_OUT_OF_TREE), where
// kernels/grouped/out_of_tree.cpp exposes forward and backward as operators.

#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/native/GroupedConv2dNative.h>

#include <ATen/core/Tensor.h>
#include <ATen/native/NativeConvChecks.h>

#ifndef AT_PER_OPERATOR_HEADERS
#include <ATen/Functions.h>
#else
#include <ATen/ops/empty.h>
#endif

#include <vector>

namespace at::native {

DEFINE_DISPATCH(native_grouped_conv2d_forward_stub);
DEFINE_DISPATCH(native_grouped_conv2d_backward_stub);

namespace {

// Checks shared by forward and backward; returns the output size.
std::vector<int64_t> check_grouped_args(
    const char* fn, const Tensor& input, const Tensor& weight, IntArrayRef stride,
    IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              fn, ": expected stride, padding and dilation of 2 elements each, got ", stride,
              ", ", padding, ", ", dilation);
  native_conv::check_tensors(fn, input, weight, "(Cout, Cin/groups, kh, kw)");
  TORCH_CHECK(groups > 0, fn, ": non-positive groups is not supported");
  const int64_t C = input.size(1), OC = weight.size(0);
  native_conv::check_input_not_empty(fn, input);
  TORCH_CHECK(OC > 0 && OC % groups == 0,
              fn, ": expected weight to have a positive multiple of groups=", groups,
              " output channels at dimension 0, got weight of size ", weight.sizes());
  TORCH_CHECK(weight.size(1) * groups == C,
              fn, ": given groups=", groups, ", weight of size ", weight.sizes(),
              ", expected input", input.sizes(), " to have ", weight.size(1) * groups,
              " channels, but got ", C, " channels instead");
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0,
              fn, ": expected a non-empty kernel, got weight of size ", weight.sizes());
  return native_conv::output_size(fn, input, OC, weight.size(2), weight.size(3), stride,
                                  padding, dilation);
}

}  // namespace

Tensor grouped_conv2d_cpu(
    const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias_opt,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const auto out_size = check_grouped_args("grouped_conv2d", input, weight, stride, padding,
                                           dilation, groups);
  Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  native_conv::check_bias("grouped_conv2d", bias, input, weight);
  if (bias.defined() && bias.dim() == 0) bias = bias.reshape({1});
  // Output in the input's suggested memory format (NCHW or channels_last).
  Tensor out = at::empty(out_size, input.options().memory_format(input.suggest_memory_format()));
  if (input.size(0) > 0) {
    native_grouped_conv2d_forward_stub(kCPU, out, input, weight, bias, stride, padding,
                                       dilation, groups);
  }
  return out;
}

std::tuple<Tensor, Tensor> grouped_conv2d_backward_cpu(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight, IntArrayRef stride,
    IntArrayRef padding, IntArrayRef dilation, int64_t groups, std::array<bool, 2> output_mask) {
  const auto out_size = check_grouped_args("grouped_conv2d_backward", input, weight, stride,
                                           padding, dilation, groups);
  native_conv::check_grad_output("grouped_conv2d_backward", grad_output, input, out_size);
  return native_grouped_conv2d_backward_stub(kCPU, grad_output, input, weight, stride, padding,
                                             dilation, groups, output_mask);
}

bool native_grouped_conv2d_supports(
    const Tensor& input, const Tensor& weight, int64_t groups, bool transposed) {
  // Symbolic sizes (FakeTensor under torch.compile with dynamic shapes) are fine: only
  // sym_size() is read, and the batch not at all (any batch, 0 included, is one call).
  return native_conv::supported_tensors(input, weight, transposed) && groups >= 1 &&
         weight.sym_size(0) > 0 && weight.sym_size(0) % groups == 0 &&
         weight.sym_size(1) > 0 && weight.sym_size(1) * groups == input.sym_size(1) &&
         input.sym_size(2) > 0 && input.sym_size(3) > 0;
}

}  // namespace at::native
