#pragma once
// Native CPU grouped 2-D convolution: one kernel call for every grouped conv
// (any groups, any input / output channels per group incl. grouped 1x1, any
// kernel size, stride, padding, dilation; NCHW and channels_last; fp32/fp64/
// fp16/bf16; forward, grad_input and grad_weight).
//
// Kept in the torch-arm-recipe repository as kernels/grouped/GroupedConv2dNative.h
// and installed into the PyTorch tree as aten/src/ATen/native/GroupedConv2dNative.h
// by the patch series. The same sources also build out of tree against an
// installed torch (`python build.py kernel`, -DDWCONV_OUT_OF_TREE).
//
// Weight layout: [groups * Cout/G, Cin/G, kh, kw] (PyTorch's). Output: the
// input's suggested memory format. 1-D convs come as 4-D with height 1.
//
// Entry points (at::native):
//   grouped_conv2d_cpu            the forward (no aten op of its own: in-tree it is
//       ConvBackend::CpuGrouped2d inside aten::_convolution; out of tree the
//       operator native_gconv::grouped_conv2d).
//   grouped_conv2d_backward_cpu   (grad_input, grad_weight); the bias gradient is
//       the caller's (convolution_backward sums grad_output).
//   native_grouped_conv2d_supports   the routing predicate.
// DispatchStubs (filled per CPU capability by cpu/GroupedConv2dNativeKernel.cpp):
//   native_grouped_conv2d_forward_stub, native_grouped_conv2d_backward_stub.

#include <ATen/core/Tensor.h>
#include <ATen/native/DispatchStub.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <c10/util/Optional.h>
#include <tuple>

namespace at::native {

// Writes the grouped conv of `input` with `weight` (+ `bias` when defined) into
// `output`, already allocated with the right sizes (any strides). Arguments are
// checked by the callers in GroupedConv2dNative.cpp.
using native_grouped_conv2d_forward_fn = void (*)(
    const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups);

// (grad_output, input, weight, stride, padding, dilation, groups,
//  {want grad_input, want grad_weight}) -> (grad_input, grad_weight);
// an unwanted gradient comes back undefined.
using native_grouped_conv2d_backward_fn = std::tuple<at::Tensor, at::Tensor> (*)(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
    at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 2>);

DECLARE_DISPATCH(native_grouped_conv2d_forward_fn, native_grouped_conv2d_forward_stub)
DECLARE_DISPATCH(native_grouped_conv2d_backward_fn, native_grouped_conv2d_backward_stub)

TORCH_API at::Tensor grouped_conv2d_cpu(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

TORCH_API std::tuple<at::Tensor, at::Tensor> grouped_conv2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 2> output_mask);

// True when the native kernel can run this conv as one call: a non-transposed
// 4-D strided CPU conv with groups >= 1 dividing both channel counts, weight
// [Cout, Cin/groups, kh, kw], input and weight of the same dtype among
// fp32/fp64/fp16/bf16, channels and spatial sizes non-zero (any batch).
// (Shape errors such as a bad padding are left to the caller's usual checks.)
TORCH_API bool native_grouped_conv2d_supports(
    const at::Tensor& input, const at::Tensor& weight, int64_t groups, bool transposed);

}  // namespace at::native
