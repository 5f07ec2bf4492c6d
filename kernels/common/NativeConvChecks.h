#pragma once

// Argument checks shared by the native depthwise and grouped 2-D convolutions
// (DepthwiseConv2dNative.cpp, GroupedConv2dNative.cpp): one message per failure, each
// prefixed with the calling operator's name `fn`.
//
// Kept in the torch-arm-recipe repository as kernels/common/NativeConvChecks.h; installed
// into the PyTorch tree as aten/src/ATen/native/NativeConvChecks.h (and staged there for the
// out-of-tree build, recipe/addon.py SHARED_HEADERS).

#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>

#include <vector>

namespace at::native::native_conv {

inline bool is_native_dtype(ScalarType t) {
  return t == kFloat || t == kDouble || t == kHalf || t == kBFloat16;
}

// Device, layout, rank and dtype of input and weight; `weight_shape` says which 4-D weight
// the operator takes, e.g. "(C*m, 1, kh, kw)".
inline void check_tensors(const char* fn, const Tensor& input, const Tensor& weight,
                          const char* weight_shape) {
  TORCH_CHECK(input.device().is_cpu() && weight.device().is_cpu(),
              fn, ": expected CPU tensors, got input on ", input.device(), " and weight on ",
              weight.device());
  TORCH_CHECK(input.layout() == kStrided && weight.layout() == kStrided,
              fn, ": expected strided tensors");
  TORCH_CHECK(input.dim() == 4, fn, ": expected 4-D input (N, C, H, W), got input of size ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4,
              fn, ": expected 4-D weight ", weight_shape, ", got weight of size ", weight.sizes());
  TORCH_CHECK(is_native_dtype(input.scalar_type()),
              fn, ": expected a float, double, half or bfloat16 input, got ", input.scalar_type());
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(),
              fn, ": expected weight of the input's dtype ", input.scalar_type(), ", got ",
              weight.scalar_type());
}

inline void check_input_not_empty(const char* fn, const Tensor& input) {
  TORCH_CHECK(input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0,
              fn, ": expected input with non-zero channels and spatial size, got input of size ",
              input.sizes());
}

// Stride, dilation and padding (2 elements each, already checked), the padded input against
// the dilated kernel (kh x kw taps); returns the output size (N, out_channels, OH, OW).
inline std::vector<int64_t> output_size(
    const char* fn, const Tensor& input, int64_t out_channels, int64_t kh, int64_t kw,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  for (const auto i : c10::irange(2)) {
    TORCH_CHECK(stride[i] > 0, fn, ": non-positive stride is not supported, got ", stride);
    TORCH_CHECK(dilation[i] > 0, fn, ": dilation should be greater than zero, got ", dilation);
    TORCH_CHECK(padding[i] >= 0, fn, ": negative padding is not supported, got ", padding);
  }
  const int64_t ph = input.size(2) + 2 * padding[0], pw = input.size(3) + 2 * padding[1];
  const int64_t dkh = dilation[0] * (kh - 1) + 1;
  const int64_t dkw = dilation[1] * (kw - 1) + 1;
  TORCH_CHECK(ph >= dkh && pw >= dkw,
              fn, ": calculated padded input size per channel: (", ph, " x ", pw, "). Kernel size: (",
              dkh, " x ", dkw, "). Kernel size can't be greater than actual input size");
  return {input.size(0), out_channels, (ph - dkh) / stride[0] + 1, (pw - dkw) / stride[1] + 1};
}

// An optional bias: undefined, or weight.size(0) elements (0-D or 1-D) of the input's dtype
// on the CPU.
inline void check_bias(const char* fn, const Tensor& bias, const Tensor& input,
                       const Tensor& weight) {
  if (!bias.defined()) return;
  TORCH_CHECK(bias.dim() <= 1 && bias.numel() == weight.size(0),
              fn, ": expected bias to be 1-dimensional with ", weight.size(0),
              " elements, but got bias of size ", bias.sizes());
  TORCH_CHECK(bias.scalar_type() == input.scalar_type(),
              fn, ": expected bias of the input's dtype ", input.scalar_type(),
              ", got ", bias.scalar_type());
  TORCH_CHECK(bias.device().is_cpu(), fn, ": expected a CPU bias");
}

inline void check_grad_output(const char* fn, const Tensor& grad_output, const Tensor& input,
                              IntArrayRef out_size) {
  TORCH_CHECK(grad_output.device().is_cpu() && grad_output.layout() == kStrided,
              fn, ": expected a strided CPU grad_output");
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              fn, ": expected grad_output of the input's dtype ",
              input.scalar_type(), ", got ", grad_output.scalar_type());
  TORCH_CHECK(grad_output.sizes() == out_size,
              fn, ": expected grad_output of size ", out_size, ", got ", grad_output.sizes());
}

// What both *_supports() ask of the tensors before their own shape rules (no check: a
// routing question). Reads no size, so symbolic shapes are fine.
inline bool supported_tensors(const Tensor& input, const Tensor& weight, bool transposed) {
  return !transposed && input.device().is_cpu() && weight.device().is_cpu() &&
         input.layout() == kStrided && weight.layout() == kStrided &&
         !input.is_quantized() && !weight.is_quantized() &&
         input.dim() == 4 && weight.dim() == 4 && is_native_dtype(input.scalar_type()) &&
         weight.scalar_type() == input.scalar_type();
}

}  // namespace at::native::native_conv
