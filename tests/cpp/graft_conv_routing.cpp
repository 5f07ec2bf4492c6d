// Graft: the patched tree's own aten/src/ATen/native/Convolution.cpp (backend selection,
// memory-format prediction, _convolution, convolution_backward), included whole and
// unchanged (GRAFT_CONVOLUTION_CPP) so its internal ConvParams selection is reachable, in a
// test library linked with -Wl,--version-script making every symbol local: the wrappers reach
// the patched copies while the wheel's libtorch_cpu keeps its own. The wrappers are
// CompositeImplicitAutograd ops: called with FakeTensors they see them as they are
// (symbolic sizes), as torch._C._select_conv_backend / _conv_determine_backend_memory_format
// do in a build of the patched tree (torch/_subclasses/fake_impls.py calls those for every
// fake convolution).
#include GRAFT_CONVOLUTION_CPP

#include <ATen/native/ConvolutionMM3d.h>
#include <ATen/native/DepthwiseConv2dNative.h>
#include <ATen/ops/_convolution_native.h>
#include <ATen/ops/convolution_backward_native.h>
#include <torch/library.h>

#include <sstream>

namespace {

using at::native::ConvBackend;

#define GRAFT_BACKENDS(X)                                                                 \
  X(CudaDepthwise2d) X(CudaDepthwise3d) X(Cudnn) X(CudnnTranspose) X(Empty) X(Miopen)     \
  X(MiopenDepthwise) X(MiopenTranspose) X(Mkldnn) X(MkldnnTranspose) X(MkldnnEmpty)       \
  X(NnpackSpatial) X(Overrideable) X(Slow2d) X(Slow3d) X(SlowDilated2d) X(SlowDilated3d)  \
  X(SlowTranspose2d) X(SlowTranspose3d) X(Winograd3x3Depthwise) X(Xnnpack2d) X(Mps)      \
  X(MpsTranspose) X(CpuDepthwise2d)

std::string backend_name(ConvBackend b) {
#define GRAFT_CASE(name) if (b == ConvBackend::name) return #name;
  GRAFT_BACKENDS(GRAFT_CASE)
#undef GRAFT_CASE
  TORCH_CHECK(false, "graft: unknown ConvBackend ", static_cast<int>(b));
}

ConvBackend backend_of(const std::string& name) {
#define GRAFT_CASE(n) if (name == #n) return ConvBackend::n;
  GRAFT_BACKENDS(GRAFT_CASE)
#undef GRAFT_CASE
  TORCH_CHECK(false, "graft: unknown ConvBackend name ", name);
}

// The patched torch._C._select_conv_backend (forward overload; bias_sizes for backward).
std::string select_backend(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                           c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                           bool transposed, c10::SymIntArrayRef output_padding, c10::SymInt groups,
                           at::OptionalSymIntArrayRef bias_sizes) {
  return backend_name(at::native::select_conv_backend(input, weight, bias, stride, padding,
                                                      dilation, transposed, output_padding,
                                                      std::move(groups), bias_sizes));
}

// The backend the patched aten::_convolution itself runs for real (int64_t) sizes: the same
// ConvParams<int64_t> selection as _convolution (only here may XNNPACK be chosen: the SymInt
// selection above never predicts it).
std::string eager_backend(const at::Tensor& input, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups) {
  at::native::ConvParams<int64_t> params;
  params.stride = stride.vec();
  params.padding = padding.vec();
  params.dilation = dilation.vec();
  params.transposed = false;
  params.output_padding = {0, 0};
  params.groups = groups;
  params.benchmark = params.deterministic = params.allow_tf32 = false;
  params.cudnn_enabled = true;
  const bool need_backward = c10::GradMode::is_enabled() &&
                             (input.requires_grad() || weight.requires_grad());
  return backend_name(at::native::_select_conv_backend(input, weight, std::nullopt,
                                                       at::OptionalIntArrayRef(), need_backward,
                                                       params));
}

// The patched torch._C._conv_determine_backend_memory_format.
std::string memory_format(const at::Tensor& input, const at::Tensor& weight,
                          const std::string& backend) {
  std::ostringstream out;
  out << at::native::_determine_backend_memory_format(input, weight, backend_of(backend));
  return out.str();
}

// What the patched build runs: aten::_convolution and aten::convolution_backward on CPU.
at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return at::native::_convolution(input, weight, bias, stride, padding, dilation, false, {0, 0},
                                  groups, false, false, true, true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const std::vector<int64_t> bias_sizes{weight.size(0)};
  return at::native::convolution_backward(grad_output, input, weight, at::IntArrayRef(bias_sizes),
                                          stride, padding, dilation, false, {0, 0}, groups,
                                          {true, true, true});
}

}  // namespace

TORCH_LIBRARY(graft_conv, m) {
  m.def("select_backend(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, "
        "SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, "
        "SymInt groups, SymInt[]? bias_sizes=None) -> str", &select_backend);
  m.def("eager_backend(Tensor input, Tensor weight, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> str", &eager_backend);
  m.def("memory_format(Tensor input, Tensor weight, str backend) -> str", &memory_format);
  m.def("convolution(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, "
        "int[] dilation, int groups) -> Tensor", &convolution);
  m.def("convolution_backward(Tensor grad_output, Tensor input, Tensor weight, int[] stride, "
        "int[] padding, int[] dilation, int groups) -> (Tensor, Tensor, Tensor)",
        &convolution_backward);
}

namespace at::native {
// Stand-ins for what the graft does not compile and the wheel does not export: the 3-D
// slow backward (never reached by these 2-D tests) and the SVE256 slots of the native
// kernel's stubs (the kernel TU is compiled for DEFAULT only; DispatchStub falls back to it).
std::tuple<Tensor, Tensor, Tensor> slow_conv3d_backward_cpu(
    const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef, IntArrayRef,
    std::array<bool, 3>) {
  TORCH_CHECK(false, "graft: slow_conv3d_backward_cpu is not part of this test library");
}
REGISTER_ARCH_DISPATCH(native_depthwise_conv2d_forward_stub, SVE256, nullptr)
REGISTER_ARCH_DISPATCH(native_depthwise_conv2d_backward_stub, SVE256, nullptr)
}  // namespace at::native

// The patched build's CPU kernel of aten::_conv_depthwise2d (RegisterCPU.cpp in a real build;
// the official wheel has none), which ConvBackend::CpuDepthwise2d calls.
TORCH_LIBRARY_IMPL(aten, CPU, m) {
  m.impl("_conv_depthwise2d", &at::native::conv_depthwise2d_cpu);
}
