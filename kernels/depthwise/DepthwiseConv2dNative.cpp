// Native CPU depthwise 2-D convolution: argument checks, output allocation,
// DispatchStub definitions and (in-tree) the CPU slot of
// conv_depthwise2d_backward_stub. The per-CPU-capability kernels are in
// cpu/DepthwiseConv2dNativeKernel.cpp.
//
// Kept in the torch-arm-recipe repository as kernels/depthwise/DepthwiseConv2dNative.cpp;
// installed into the PyTorch tree as aten/src/ATen/native/DepthwiseConv2dNative.cpp.
// Built out of tree (python build.py kernel) with -DDWCONV_OUT_OF_TREE: the
// installed torch already defines conv_depthwise2d_backward_stub's CPU slot
// (empty), so it is not registered here; out_of_tree.cpp exposes the backward as
// an operator instead.

#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/native/DepthwiseConv2dNative.h>

#include <ATen/core/Tensor.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/native/ConvUtils.h>
#include <ATen/native/NativeConvChecks.h>
#include <ATen/native/Resize.h>

#ifndef AT_PER_OPERATOR_HEADERS
#include <ATen/Functions.h>
#include <ATen/NativeFunctions.h>
#else
#include <ATen/ops/_conv_depthwise2d_native.h>
#include <ATen/ops/empty.h>
#endif

namespace at::native {

DEFINE_DISPATCH(native_depthwise_conv2d_forward_stub);
DEFINE_DISPATCH(native_depthwise_conv2d_backward_stub);

namespace {

// Checks shared by forward and backward; returns the output size.
std::vector<int64_t> check_depthwise_args(
    const char* fn, const Tensor& self, const Tensor& weight, IntArrayRef kernel_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && padding.size() == 2 &&
                  dilation.size() == 2,
              fn, ": expected kernel_size, stride, padding and dilation of 2 elements each, got ",
              kernel_size, ", ", stride, ", ", padding, ", ", dilation);
  native_conv::check_tensors(fn, self, weight, "(C*m, 1, kh, kw)");
  const int64_t C = self.size(1);
  native_conv::check_input_not_empty(fn, self);
  TORCH_CHECK(weight.size(1) == 1,
              fn, ": depthwise weight must have size 1 at dimension 1 (weight of size ",
              weight.sizes(), ")");
  TORCH_CHECK(weight.size(0) > 0 && weight.size(0) % C == 0,
              fn, ": given an input with ", C, " channels, expected weight to have a positive "
              "multiple of ", C, " output channels at dimension 0, got weight of size ",
              weight.sizes());
  TORCH_CHECK(weight.size(2) == kernel_size[0] && weight.size(3) == kernel_size[1],
              fn, ": kernel_size ", kernel_size, " does not match weight of size ", weight.sizes());
  return native_conv::output_size(fn, self, weight.size(0), kernel_size[0], kernel_size[1],
                                  stride, padding, dilation);
}

}  // namespace

const Tensor& conv_depthwise2d_cpu_out(
    const Tensor& self, const Tensor& weight, IntArrayRef kernel_size,
    const c10::optional<Tensor>& bias_opt, IntArrayRef stride, IntArrayRef padding,
    IntArrayRef dilation, const Tensor& out) {
  const auto out_size = check_depthwise_args("_conv_depthwise2d", self, weight, kernel_size,
                                             stride, padding, dilation);
  const Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  native_conv::check_bias("_conv_depthwise2d", bias, self, weight);
  TORCH_CHECK(out.scalar_type() == self.scalar_type(),
              "_conv_depthwise2d: expected out of dtype ", self.scalar_type(), ", got ",
              out.scalar_type());
  at::assert_no_internal_overlap(out);
  at::assert_no_overlap(out, self);
  at::assert_no_overlap(out, weight);
  if (bias.defined()) at::assert_no_overlap(out, bias);
  at::native::resize_output(out, out_size);
  const Tensor bias1d = (bias.defined() && bias.dim() == 0) ? bias.reshape({1}) : bias;
  native_depthwise_conv2d_forward_stub(kCPU, out, self, weight, bias1d, kernel_size, stride,
                                       padding, dilation);
  return out;
}

Tensor conv_depthwise2d_cpu(
    const Tensor& self, const Tensor& weight, IntArrayRef kernel_size,
    const c10::optional<Tensor>& bias_opt, IntArrayRef stride, IntArrayRef padding,
    IntArrayRef dilation) {
  const auto out_size = check_depthwise_args("_conv_depthwise2d", self, weight, kernel_size,
                                             stride, padding, dilation);
  const Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  native_conv::check_bias("_conv_depthwise2d", bias, self, weight);
  // Output in the input's suggested memory format (NCHW or channels_last).
  Tensor out = at::empty(out_size, self.options().memory_format(self.suggest_memory_format()));
  const Tensor bias1d = (bias.defined() && bias.dim() == 0) ? bias.reshape({1}) : bias;
  native_depthwise_conv2d_forward_stub(kCPU, out, self, weight, bias1d, kernel_size, stride,
                                       padding, dilation);
  return out;
}

std::tuple<Tensor, Tensor> conv_depthwise2d_backward_cpu(
    const Tensor& grad_output, const Tensor& self, const Tensor& weight,
    IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
    std::array<bool, 2> output_mask) {
  const auto out_size = check_depthwise_args("conv_depthwise2d_backward", self, weight,
                                             kernel_size, stride, padding, dilation);
  native_conv::check_grad_output("conv_depthwise2d_backward", grad_output, self, out_size);
  return native_depthwise_conv2d_backward_stub(kCPU, grad_output, self, weight, kernel_size,
                                               stride, padding, dilation, output_mask);
}

bool native_depthwise_conv2d_supports(
    const Tensor& input, const Tensor& weight, int64_t groups, bool transposed) {
  // Symbolic sizes (FakeTensor under torch.compile with dynamic shapes, through
  // _select_conv_backend) are fine: only sym_size() is read, never size()/numel(), and
  // the batch not at all (any batch, 0 included, runs as one call).
  return native_conv::supported_tensors(input, weight, transposed) && groups >= 1 &&
         input.sym_size(1) == groups && input.sym_size(2) > 0 && input.sym_size(3) > 0 &&
         weight.sym_size(1) == 1 && weight.sym_size(0) > 0 && weight.sym_size(0) % groups == 0;
}

#ifndef DWCONV_OUT_OF_TREE
// The CUDA-only stub used by convolution_backward for the depthwise backends
// gets its CPU slot here (Convolution.cpp no longer registers it empty).
REGISTER_ALL_CPU_DISPATCH(conv_depthwise2d_backward_stub, &conv_depthwise2d_backward_cpu)
#endif

}  // namespace at::native
