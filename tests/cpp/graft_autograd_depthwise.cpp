// Graft: the autograd formula of aten::_conv_depthwise2d as torchgen generates it from a
// tree's tools/autograd/derivatives.yaml (ConvDepthwise2DBackward0_apply_functional, the body
// of ConvDepthwise2DBackward0::apply in torch/csrc/autograd/generated/Functions.cpp), compiled
// unchanged (GRAFT_FORMULA: the file the test extracts it to, which also defines
// GRAFT_FORMULA_ARGS: the saved values in the generated parameter order, named as below) and
// exposed as a test op, so the formula a build of that tree would run can be run on real
// tensors.
#include <torch/csrc/autograd/FunctionsManual.h>
#include <torch/library.h>

using namespace torch::autograd::generated::details;
using at::IntArrayRef;
using at::Scalar;
using at::Tensor;
using at::TensorList;

namespace torch::autograd::generated {
#include GRAFT_FORMULA
}  // namespace torch::autograd::generated

namespace {

std::vector<c10::SymInt> sym(at::IntArrayRef a) {
  return std::vector<c10::SymInt>(a.begin(), a.end());
}

// ConvDepthwise2DBackward0::apply with the saved values given as arguments.
std::vector<Tensor> conv_depthwise2d_backward(const Tensor& grad, const Tensor& self,
                                              const Tensor& weight, bool bias,
                                              at::IntArrayRef stride, at::IntArrayRef padding,
                                              at::IntArrayRef dilation) {
  c10::OptionalArray<c10::SymInt> bias_sizes;
  if (bias) bias_sizes.list = std::vector<c10::SymInt>{c10::SymInt(weight.size(0))};
  auto dilation_ = sym(dilation), padding_ = sym(padding), stride_ = sym(stride);
  Tensor self_ = self, weight_ = weight;
  c10::SymInt self_size_1 = self.sym_size(1);
  return torch::autograd::generated::ConvDepthwise2DBackward0_apply_functional(
      {grad}, {true, true, bias}, GRAFT_FORMULA_ARGS);
}

}  // namespace

TORCH_LIBRARY(graft_autograd, m) {
  m.def("conv_depthwise2d_backward(Tensor grad, Tensor self, Tensor weight, bool bias, "
        "int[] stride, int[] padding, int[] dilation) -> Tensor[]",
        &conv_depthwise2d_backward);
}
