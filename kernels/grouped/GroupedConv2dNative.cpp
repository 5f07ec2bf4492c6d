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
#include <c10/util/irange.h>

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

bool is_native_dtype(ScalarType t) {
  return t == kFloat || t == kDouble || t == kHalf || t == kBFloat16;
}

// Checks shared by forward and backward; returns the output size.
std::vector<int64_t> check_grouped_args(
    const char* fn, const Tensor& input, const Tensor& weight, IntArrayRef stride,
    IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              fn, ": expected stride, padding and dilation of 2 elements each, got ", stride,
              ", ", padding, ", ", dilation);
  TORCH_CHECK(input.device().is_cpu() && weight.device().is_cpu(),
              fn, ": expected CPU tensors, got input on ", input.device(), " and weight on ",
              weight.device());
  TORCH_CHECK(input.layout() == kStrided && weight.layout() == kStrided,
              fn, ": expected strided tensors");
  TORCH_CHECK(input.dim() == 4, fn, ": expected 4-D input (N, C, H, W), got input of size ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4, fn, ": expected 4-D weight (Cout, Cin/groups, kh, kw), got "
              "weight of size ", weight.sizes());
  TORCH_CHECK(is_native_dtype(input.scalar_type()),
              fn, ": expected a float, double, half or bfloat16 input, got ", input.scalar_type());
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(),
              fn, ": expected weight of the input's dtype ", input.scalar_type(), ", got ",
              weight.scalar_type());
  TORCH_CHECK(groups > 0, fn, ": non-positive groups is not supported");
  const int64_t C = input.size(1), OC = weight.size(0);
  TORCH_CHECK(C > 0 && input.size(2) > 0 && input.size(3) > 0,
              fn, ": expected input with non-zero channels and spatial size, got input of size ",
              input.sizes());
  TORCH_CHECK(OC > 0 && OC % groups == 0,
              fn, ": expected weight to have a positive multiple of groups=", groups,
              " output channels at dimension 0, got weight of size ", weight.sizes());
  TORCH_CHECK(weight.size(1) * groups == C,
              fn, ": given groups=", groups, ", weight of size ", weight.sizes(),
              ", expected input", input.sizes(), " to have ", weight.size(1) * groups,
              " channels, but got ", C, " channels instead");
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0,
              fn, ": expected a non-empty kernel, got weight of size ", weight.sizes());
  for (const auto i : c10::irange(2)) {
    TORCH_CHECK(stride[i] > 0, fn, ": non-positive stride is not supported, got ", stride);
    TORCH_CHECK(dilation[i] > 0, fn, ": dilation should be greater than zero, got ", dilation);
    TORCH_CHECK(padding[i] >= 0, fn, ": negative padding is not supported, got ", padding);
  }
  const int64_t ph = input.size(2) + 2 * padding[0], pw = input.size(3) + 2 * padding[1];
  const int64_t kh = dilation[0] * (weight.size(2) - 1) + 1;
  const int64_t kw = dilation[1] * (weight.size(3) - 1) + 1;
  TORCH_CHECK(ph >= kh && pw >= kw,
              fn, ": calculated padded input size per channel: (", ph, " x ", pw, "). Kernel size: (",
              kh, " x ", kw, "). Kernel size can't be greater than actual input size");
  return {input.size(0), OC, (ph - kh) / stride[0] + 1, (pw - kw) / stride[1] + 1};
}

}  // namespace

Tensor grouped_conv2d_cpu(
    const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias_opt,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const auto out_size = check_grouped_args("grouped_conv2d", input, weight, stride, padding,
                                           dilation, groups);
  Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() <= 1 && bias.numel() == weight.size(0),
                "grouped_conv2d: expected bias to be 1-dimensional with ", weight.size(0),
                " elements, but got bias of size ", bias.sizes());
    TORCH_CHECK(bias.scalar_type() == input.scalar_type(),
                "grouped_conv2d: expected bias of the input's dtype ", input.scalar_type(),
                ", got ", bias.scalar_type());
    TORCH_CHECK(bias.device().is_cpu(), "grouped_conv2d: expected a CPU bias");
    if (bias.dim() == 0) bias = bias.reshape({1});
  }
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
  TORCH_CHECK(grad_output.device().is_cpu() && grad_output.layout() == kStrided,
              "grouped_conv2d_backward: expected a strided CPU grad_output");
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "grouped_conv2d_backward: expected grad_output of the input's dtype ",
              input.scalar_type(), ", got ", grad_output.scalar_type());
  TORCH_CHECK(grad_output.sizes() == IntArrayRef(out_size),
              "grouped_conv2d_backward: expected grad_output of size ", IntArrayRef(out_size),
              ", got ", grad_output.sizes());
  return native_grouped_conv2d_backward_stub(kCPU, grad_output, input, weight, stride, padding,
                                             dilation, groups, output_mask);
}

bool native_grouped_conv2d_supports(
    const Tensor& input, const Tensor& weight, int64_t groups, bool transposed) {
  // Symbolic sizes (FakeTensor under torch.compile with dynamic shapes) are fine: only
  // sym_size() is read, and the batch not at all (any batch, 0 included, is one call).
  return !transposed && input.device().is_cpu() && weight.device().is_cpu() &&
         input.layout() == kStrided && weight.layout() == kStrided &&
         !input.is_quantized() && !weight.is_quantized() &&
         input.dim() == 4 && weight.dim() == 4 && is_native_dtype(input.scalar_type()) &&
         weight.scalar_type() == input.scalar_type() && groups >= 1 &&
         weight.sym_size(0) > 0 && weight.sym_size(0) % groups == 0 &&
         weight.sym_size(1) > 0 && weight.sym_size(1) * groups == input.sym_size(1) &&
         input.sym_size(2) > 0 && input.sym_size(3) > 0;
}

}  // namespace at::native
