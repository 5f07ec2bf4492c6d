#pragma once
// Native CPU depthwise 2-D convolution: one kernel call for every depthwise conv
// (any kernel size, stride, padding, dilation, channel multiplier; NCHW and
// channels_last; fp32/fp64/fp16/bf16; forward and backward).
//
// Kept in the torch-arm-recipe repository as kernels/depthwise/DepthwiseConv2dNative.h
// and installed into the PyTorch tree as aten/src/ATen/native/DepthwiseConv2dNative.h
// by the patch series. The same sources also build out of tree against an
// installed torch (`python build.py kernel`, -DDWCONV_OUT_OF_TREE).
//
// Weight layout: [C * m, 1, kh, kw] (m = channel multiplier); output channel
// o reads input channel o / m. Output: the input's suggested memory format.
//
// Entry points (at::native):
//   conv_depthwise2d_cpu / conv_depthwise2d_cpu_out   CPU kernels of
//       aten::_conv_depthwise2d and aten::_conv_depthwise2d.out (signatures as
//       torchgen generates them for native_functions.yaml: SymInt[2] -> IntArrayRef
//       because the kernels are not symint; .out uses const Tensor& because of
//       use_const_ref_for_mutable_tensors).
//   conv_depthwise2d_backward_cpu   same type as conv_depthwise2d_backward_fn
//       (ConvUtils.h): (grad_input, grad_weight); the bias gradient is the
//       caller's (convolution_backward sums grad_output).
//   native_depthwise_conv2d_supports   the routing predicate: can the native
//       kernel run this exact conv as one call?
// DispatchStubs (filled per CPU capability by cpu/DepthwiseConv2dNativeKernel.cpp):
//   native_depthwise_conv2d_forward_stub, native_depthwise_conv2d_backward_stub.

#include <ATen/core/Tensor.h>
#include <ATen/native/DispatchStub.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <c10/util/Optional.h>
#include <tuple>

namespace at::native {

// Writes the depthwise conv of `input` with `weight` (+ `bias` when defined)
// into `output`, already allocated with the right sizes (any strides).
// Arguments are checked by the callers in DepthwiseConv2dNative.cpp.
using native_depthwise_conv2d_forward_fn = void (*)(
    const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& bias, at::IntArrayRef kernel_size, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation);

// Same type as conv_depthwise2d_backward_fn in ConvUtils.h:
// (grad_output, input, weight, kernel_size, stride, padding, dilation,
//  {want grad_input, want grad_weight}) -> (grad_input, grad_weight);
// an unwanted gradient comes back undefined.
using native_depthwise_conv2d_backward_fn = std::tuple<at::Tensor, at::Tensor> (*)(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
    at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, std::array<bool, 2>);

DECLARE_DISPATCH(native_depthwise_conv2d_forward_fn, native_depthwise_conv2d_forward_stub)
DECLARE_DISPATCH(native_depthwise_conv2d_backward_fn, native_depthwise_conv2d_backward_stub)

TORCH_API at::Tensor conv_depthwise2d_cpu(
    const at::Tensor& self, const at::Tensor& weight, at::IntArrayRef kernel_size,
    const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation);

TORCH_API const at::Tensor& conv_depthwise2d_cpu_out(
    const at::Tensor& self, const at::Tensor& weight, at::IntArrayRef kernel_size,
    const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& out);

TORCH_API std::tuple<at::Tensor, at::Tensor> conv_depthwise2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& weight,
    at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, std::array<bool, 2> output_mask);

// True when the native kernel can run this conv as one call: a non-transposed
// 4-D strided CPU conv with groups == input channels, weight [groups*m, 1, kh, kw],
// input and weight of the same dtype among fp32/fp64/fp16/bf16.
// (Shape errors such as a bad padding are left to the caller's usual checks.)
TORCH_API bool native_depthwise_conv2d_supports(
    const at::Tensor& input, const at::Tensor& weight, int64_t groups, bool transposed);

}  // namespace at::native
