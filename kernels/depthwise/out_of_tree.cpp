// Out-of-tree registrations of the native CPU depthwise kernel (the add-on
// torch-grouped-conv and `python build.py kernel`, built with -DDWCONV_OUT_OF_TREE).
//
// After the add-on's loader (addon/torch_grouped_conv/_loader.py) loaded it and ran
// torch_grouped_conv_register() (addon/csrc/Registration.h):
//   * aten::_conv_depthwise2d and aten::_conv_depthwise2d.out run on CPU tensors
//     (stock torch has only a CUDA kernel for them, so nothing is overridden), and
//     so does the backward of a direct aten::_conv_depthwise2d call (an AutogradCPU
//     kernel: stock derivatives.yaml passes groups=1 to convolution_backward, which
//     fails for every depthwise weight; the in-tree series patches the formula);
//   * native_dwconv::conv_depthwise2d_backward(grad_output, self, weight,
//     kernel_size, stride, padding, dilation, output_mask) -> (grad_input,
//     grad_weight, grad_bias) is the backward (undefined = None where the mask is
//     false);
//   * the routing shim: CPU kernels for aten::convolution and
//     aten::convolution_backward. Both ops only have a CompositeExplicitAutograd
//     kernel in stock torch (2.6 .. 2.13), so a CPU kernel takes precedence for
//     CPU tensors without overriding anything. Autograd is untouched: the
//     Autograd kernel of aten::convolution runs first and records
//     ConvolutionBackward0, whose backward calls aten::convolution_backward, which
//     lands in the shim again. The shim sends a grouped (groups > 1) 1-D/2-D CPU
//     conv to the native kernel -- depthwise ones to this family, the others to
//     the grouped family's native_gconv operators (kernels/grouped/) -- when the
//     routing policy (kernels/routing/ConvRouting.h, the same header the in-tree
//     patch uses; override env PYTORCH_GROUPED_CONV_BACKEND=auto|mkldnn|xnnpack|winograd|native|loop)
//     picks it, and everything else to at::native::convolution /
//     at::native::convolution_backward, i.e. stock behaviour.
//     Switch: env PYTORCH_NATIVE_DWCONV_SHIM=0 at load time, or at run time
//     torch.ops.native_dwconv.set_shim_enabled(False) (returns the previous
//     state); torch.ops.native_dwconv.routing_choice(...) tells what the policy
//     picks for a case.
// If the running torch already has a CPU kernel for aten::_conv_depthwise2d
// (a torch built with this recipe's patch series, whose routing already uses it),
// nothing of aten is registered: only the native_dwconv operators are added.
// Built by recipe/addon.py (the add-on wheel and `build.py kernel`): its
// DispatchStubs are the add-on's own tables (addon/csrc/CapabilityDispatch.h).

#include <ATen/native/DepthwiseConv2dNative.h>
#include <ATen/native/GroupedConv2dNative.h>
#include <ConvRouting.h>
#include <Registration.h>

#include <ATen/Config.h>
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_conv_depthwise2d.h>
#include <ATen/ops/_conv_depthwise2d_ops.h>
#include <ATen/ops/convolution_backward_native.h>
#include <ATen/ops/convolution_backward_ops.h>
#include <ATen/ops/convolution_ops.h>
#include <ATen/ops/convolution_native.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/core/GradMode.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

namespace {

using at::IntArrayRef;
using at::Tensor;
namespace routing = at::native::conv_routing;

// ---------------------------------------------------------------------------
// aten::_conv_depthwise2d(.out) CPU kernels (schema: SymInt[2] arguments).
// ---------------------------------------------------------------------------
inline IntArrayRef as_ints(IntArrayRef a) { return a; }
inline IntArrayRef as_ints(c10::SymIntArrayRef a) { return C10_AS_INTARRAYREF_SLOW(a); }

// The schemas' C++ signatures differ between releases (2.1: int[2] kernel_size/stride/
// dilation and SymInt[2] padding; 2.6: SymInt[2] everywhere; .out: const Tensor& out in 2.6,
// Tensor& in 2.13), so the kernels are generated from the installed torch's own schema types.
template <class Sig>
struct DwForwardKernel;
template <class R, class B, class K, class S, class P, class D>
struct DwForwardKernel<R(const Tensor&, const Tensor&, K, B, S, P, D)> {
  static R call(const Tensor& self, const Tensor& weight, K kernel_size, B bias, S stride,
                P padding, D dilation) {
    return at::native::conv_depthwise2d_cpu(self, weight, as_ints(kernel_size), bias,
                                            as_ints(stride), as_ints(padding), as_ints(dilation));
  }
};
using DwForward = DwForwardKernel<at::_ops::_conv_depthwise2d::schema>;

template <class Sig>
struct DwOutKernel;
template <class R, class B, class K, class S, class P, class D, class OutT>
struct DwOutKernel<R(const Tensor&, const Tensor&, K, B, S, P, D, OutT)> {
  static R call(const Tensor& self, const Tensor& weight, K kernel_size, B bias, S stride,
                P padding, D dilation, OutT out) {
    at::native::conv_depthwise2d_cpu_out(self, weight, as_ints(kernel_size), bias, as_ints(stride),
                                         as_ints(padding), as_ints(dilation), out);
    return out;
  }
};
using DwOut = DwOutKernel<at::_ops::_conv_depthwise2d_out::schema>;

// native_dwconv::conv_depthwise2d_backward
std::tuple<Tensor, Tensor, Tensor> dw_backward(
    const Tensor& grad_output, const Tensor& self, const Tensor& weight,
    IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
    std::array<bool, 3> output_mask) {
  auto [grad_input, grad_weight] = at::native::conv_depthwise2d_backward_cpu(
      grad_output, self, weight, kernel_size, stride, padding, dilation,
      {output_mask[0], output_mask[1]});
  Tensor grad_bias;
  if (output_mask[2]) grad_bias = grad_output.sum(IntArrayRef{0, 2, 3});
  return std::make_tuple(grad_input, grad_weight, grad_bias);
}

// Autograd of a direct aten::_conv_depthwise2d call on CPU tensors: the native
// backward (what the patched formula, convolution_backward with groups = channels,
// routes to in-tree). First-order gradients only. Generated from the installed torch's
// schema types, as the forward kernels above.
template <class Sig>
struct DwAutogradKernel;
template <class R, class B, class K, class S, class P, class D>
struct DwAutogradKernel<R(const Tensor&, const Tensor&, K, B, S, P, D)> {
  struct Fn : public torch::autograd::Function<Fn> {
    static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& self,
                          const Tensor& weight, K kernel_size, B bias, S stride, P padding,
                          D dilation) {
      ctx->save_for_backward({self, weight});
      ctx->saved_data["kernel_size"] = as_ints(kernel_size).vec();
      ctx->saved_data["stride"] = as_ints(stride).vec();
      ctx->saved_data["padding"] = as_ints(padding).vec();
      ctx->saved_data["dilation"] = as_ints(dilation).vec();
      ctx->saved_data["bias"] = bias.has_value() && bias->defined();
      at::AutoDispatchBelowADInplaceOrView guard;
      return at::_ops::_conv_depthwise2d::call(self, weight, kernel_size, bias, stride, padding,
                                               dilation);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
      const auto saved = ctx->get_saved_variables();
      auto arg = [&](const char* name) { return ctx->saved_data[name].toIntVector(); };
      // needs_input_grad counts tensor inputs only: self, weight, then bias when given.
      const std::array<bool, 3> mask = {
          ctx->needs_input_grad(0), ctx->needs_input_grad(1),
          ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)};
      auto [gi, gw, gb] = dw_backward(grads[0], saved[0], saved[1], arg("kernel_size"),
                                      arg("stride"), arg("padding"), arg("dilation"), mask);
      return {gi, gw, Tensor(), gb, Tensor(), Tensor(), Tensor()};
    }
  };
  static R call(const Tensor& self, const Tensor& weight, K kernel_size, B bias, S stride,
                P padding, D dilation) {
    return Fn::apply(self, weight, kernel_size, bias, stride, padding, dilation);
  }
};
using DwForwardAutograd = DwAutogradKernel<at::_ops::_conv_depthwise2d::schema>;

// ---------------------------------------------------------------------------
// Routing shim
// ---------------------------------------------------------------------------
bool env_shim_default() {
  const char* v = std::getenv("PYTORCH_NATIVE_DWCONV_SHIM");
  if (v == nullptr || *v == '\0') return true;
  return !(std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 ||
           std::strcmp(v, "false") == 0 || std::strcmp(v, "OFF") == 0 ||
           std::strcmp(v, "False") == 0);
}
std::atomic<bool>& shim_flag() {
  static std::atomic<bool> flag{env_shim_default()};
  return flag;
}

// A grouped 1-D or 2-D conv brought to the 4-D form the kernel takes.
struct DwCase {
  bool ok = false;  // a valid grouped conv the native kernel could run
  bool one_d = false;
  bool depthwise = true;  // false: a grouped conv for the native grouped kernel
  int64_t groups = 1;
  Tensor input, weight;
  std::vector<int64_t> kernel_size, stride, padding, dilation;
};

std::vector<int64_t> as_vec(c10::SymIntArrayRef a, size_t dim) {
  std::vector<int64_t> v;
  for (const auto& s : a) {
    auto m = recipe_compat::maybe_as_int(s);
    if (!m) return {};
    v.push_back(*m);
  }
  if (v.size() == 1 && dim > 1) v.assign(dim, v[0]);
  return v;
}

DwCase make_case(const Tensor& input, const Tensor& weight, c10::SymIntArrayRef stride,
                 c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, bool transposed,
                 c10::SymIntArrayRef output_padding, const c10::SymInt& groups) {
  DwCase c;
  const auto g = recipe_compat::maybe_as_int(groups);
  if (transposed || !g || *g <= 1) return c;
  const int64_t k = input.dim();
  if ((k != 3 && k != 4) || weight.dim() != k || input.layout() != at::kStrided ||
      weight.layout() != at::kStrided || !input.device().is_cpu()) {
    return c;
  }
  const size_t sd = static_cast<size_t>(k - 2);
  auto s = as_vec(stride, sd), p = as_vec(padding, sd), d = as_vec(dilation, sd);
  auto op = as_vec(output_padding, sd);
  if (s.size() != sd || p.size() != sd || d.size() != sd) return c;
  for (auto v : op) if (v != 0) return c;
  for (size_t i = 0; i < sd; ++i) {
    if (s[i] <= 0 || d[i] <= 0 || p[i] < 0) return c;
  }
  if (k == 3) {
    c.one_d = true;
    c.input = input.unsqueeze(2);
    c.weight = weight.unsqueeze(2);
    s.insert(s.begin(), 1);
    p.insert(p.begin(), 0);
    d.insert(d.begin(), 1);
  } else {
    c.input = input;
    c.weight = weight;
  }
  if (!at::native::native_depthwise_conv2d_supports(c.input, c.weight, *g, transposed)) {
    c.depthwise = false;
    if (c.input.size(1) == *g ||
        !at::native::native_grouped_conv2d_supports(c.input, c.weight, *g, transposed)) {
      return c;
    }
  }
  c.groups = *g;
  for (size_t i = 0; i < 2; ++i) {  // the padded input must hold the dilated kernel
    const int64_t padded = c.input.size(2 + i) + 2 * p[i];
    const int64_t span = d[i] * (c.weight.size(2 + i) - 1) + 1;
    if (padded < span) return c;
  }
  c.kernel_size = {c.weight.size(2), c.weight.size(3)};
  c.stride = s;
  c.padding = p;
  c.dilation = d;
  c.ok = true;
  return c;
}

// Whether oneDNN would take this case (an approximation of ConvParams::use_mkldnn,
// which is internal to Convolution.cpp: fp32 only here).
bool mkldnn_would_run(const Tensor& input) {
  return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() &&
         input.scalar_type() == at::kFloat;
}

routing::Kernel choose(const DwCase& c, bool need_backward) {
  routing::Case rc;
  rc.depthwise = c.depthwise;
  // 1-D convs: in-tree, _convolution makes a 3-D input contiguous before routing, so
  // they route as NCHW (the kernel here reads the strided input as it is, no copy).
  rc.channels_last = !c.one_d &&
                     c.input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  rc.need_backward = need_backward;
  rc.mkldnn_is_acl = AT_MKLDNN_ACL_ENABLED();
  rc.mkldnn = mkldnn_would_run(c.input);
  rc.xnnpack = false;   // not reachable from outside libtorch
  rc.winograd = false;  // idem
  rc.native = c.depthwise;
  rc.native_grouped = !c.depthwise;
  const char* text = std::getenv(routing::kOverrideEnv);
  bool ok = true;
  const routing::Kernel forced = routing::parse(text, &ok);
  TORCH_CHECK(ok, routing::kOverrideEnv, "='", text,
              "' is not a convolution backend; use one of auto, mkldnn, xnnpack, winograd, "
              "native, loop");
  return routing::choose(rc, forced);
}

bool need_backward_of(const Tensor& input, const Tensor& weight, const c10::optional<Tensor>& bias) {
  return c10::GradMode::is_enabled() &&
         (input.requires_grad() || weight.requires_grad() ||
          (bias.has_value() && bias->defined() && bias->requires_grad()));
}

// ---- Grouped (1 < groups < channels): the native_gconv operators (kernels/grouped/). ----
Tensor grouped_forward(const DwCase& c, const c10::optional<Tensor>& bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("native_gconv::grouped_conv2d", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const c10::optional<Tensor>&,
                                     IntArrayRef, IntArrayRef, IntArrayRef, int64_t)>();
  Tensor out = op.call(c.input, c.weight, bias, c.stride, c.padding, c.dilation, c.groups);
  // Like stock conv1d: a contiguous output.
  return c.one_d ? out.squeeze(2).contiguous() : out;
}

std::tuple<Tensor, Tensor, Tensor> grouped_backward(const DwCase& c, const Tensor& grad_output,
                                                    std::array<bool, 3> mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("native_gconv::grouped_conv2d_backward", "")
                       .typed<std::tuple<Tensor, Tensor, Tensor>(
                           const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef,
                           IntArrayRef, int64_t, std::array<bool, 3>)>();
  auto [gi, gw, gb] = op.call(c.one_d ? grad_output.unsqueeze(2) : grad_output, c.input,
                              c.weight, c.stride, c.padding, c.dilation, c.groups, mask);
  if (c.one_d) {
    if (gi.defined()) gi = gi.squeeze(2);
    if (gw.defined()) gw = gw.squeeze(2);
  }
  return std::make_tuple(gi, gw, gb);
}

Tensor shim_convolution_impl(const Tensor& input, const Tensor& weight,
                        const c10::optional<Tensor>& bias, c10::SymIntArrayRef stride,
                        c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                        bool transposed, c10::SymIntArrayRef output_padding,
                        c10::SymInt groups) {
  if (shim_flag().load(std::memory_order_relaxed)) {
    DwCase c = make_case(input, weight, stride, padding, dilation, transposed, output_padding,
                         groups);
    const bool bias_ok = !bias.has_value() || !bias->defined() ||
                         (bias->dim() == 1 && bias->size(0) == weight.size(0) &&
                          bias->scalar_type() == input.scalar_type());
    const routing::Kernel k =
        c.ok && bias_ok ? choose(c, need_backward_of(input, weight, bias)) : routing::Kernel::None;
    if (k == routing::Kernel::NativeGrouped) return grouped_forward(c, bias);
    if (k == routing::Kernel::NativeDepthwise) {
      if (c.one_d) {
        // Like stock conv1d: contiguous output (the kernel reads any input strides).
        auto sizes = c.input.sizes().vec();
        const int64_t ow = (sizes[3] + 2 * c.padding[1] - c.dilation[1] * (c.kernel_size[1] - 1) - 1) /
                               c.stride[1] + 1;
        Tensor out = at::empty({sizes[0], c.weight.size(0), 1, ow}, input.options());
        at::_conv_depthwise2d_out(out, c.input, c.weight, c.kernel_size, bias, c.stride,
                                  c.padding, c.dilation);
        return out.squeeze(2);
      }
      return at::_conv_depthwise2d(c.input, c.weight, c.kernel_size, bias, c.stride, c.padding,
                                   c.dilation);
    }
  }
  return at::native::convolution(
      input, weight, bias, C10_AS_INTARRAYREF_SLOW(stride), C10_AS_INTARRAYREF_SLOW(padding),
      C10_AS_INTARRAYREF_SLOW(dilation), transposed, C10_AS_INTARRAYREF_SLOW(output_padding),
      groups.guard_int(__FILE__, __LINE__));
}

std::tuple<Tensor, Tensor, Tensor> call_native_backward(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight,
    IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
    std::array<bool, 3> mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("native_dwconv::conv_depthwise2d_backward", "")
                       .typed<std::tuple<Tensor, Tensor, Tensor>(
                           const Tensor&, const Tensor&, const Tensor&, IntArrayRef, IntArrayRef,
                           IntArrayRef, IntArrayRef, std::array<bool, 3>)>();
  return op.call(grad_output, input, weight, kernel_size, stride, padding, dilation, mask);
}

std::tuple<Tensor, Tensor, Tensor> shim_convolution_backward_impl(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight,
    at::OptionalSymIntArrayRef bias_sizes, c10::SymIntArrayRef stride,
    c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, bool transposed,
    c10::SymIntArrayRef output_padding, c10::SymInt groups, std::array<bool, 3> output_mask) {
  if (shim_flag().load(std::memory_order_relaxed)) {
    DwCase c = make_case(input, weight, stride, padding, dilation, transposed, output_padding,
                         groups);
    const routing::Kernel k = c.ok && grad_output.dim() == input.dim() &&
                                      grad_output.scalar_type() == input.scalar_type()
                                  ? choose(c, /*need_backward=*/true)
                                  : routing::Kernel::None;
    if (k == routing::Kernel::NativeGrouped) return grouped_backward(c, grad_output, output_mask);
    if (k == routing::Kernel::NativeDepthwise) {
      const Tensor go = c.one_d ? grad_output.unsqueeze(2) : grad_output;
      auto [gi, gw, gb] = call_native_backward(go, c.input, c.weight, c.kernel_size, c.stride,
                                               c.padding, c.dilation, output_mask);
      if (c.one_d) {
        if (gi.defined()) gi = gi.squeeze(2);
        if (gw.defined()) gw = gw.squeeze(2);
      }
      return std::make_tuple(gi, gw, gb);
    }
  }
  c10::optional<IntArrayRef> bs;
  if (bias_sizes.has_value()) bs = C10_AS_INTARRAYREF_SLOW(*bias_sizes);
  return at::native::convolution_backward(
      grad_output, input, weight, bs ? at::OptionalIntArrayRef(*bs) : at::OptionalIntArrayRef(),
      C10_AS_INTARRAYREF_SLOW(stride), C10_AS_INTARRAYREF_SLOW(padding),
      C10_AS_INTARRAYREF_SLOW(dilation), transposed, C10_AS_INTARRAYREF_SLOW(output_padding),
      groups.guard_int(__FILE__, __LINE__), output_mask);
}

// aten::convolution(_backward)'s int lists are int[] in older releases (2.1: stride,
// dilation, groups) and SymInt[] in newer ones: the shims are generated from the
// installed torch's schema types and forward to the SymInt implementations above.
inline std::vector<c10::SymInt> syms(IntArrayRef a) { return std::vector<c10::SymInt>(a.begin(), a.end()); }
inline c10::SymIntArrayRef syms(c10::SymIntArrayRef a) { return a; }
inline c10::SymInt sym(int64_t v) { return c10::SymInt(v); }
inline c10::SymInt sym(c10::SymInt v) { return v; }

template <class Sig>
struct ShimConvolution;
template <class R, class B, class S, class P, class D, class OP, class G>
struct ShimConvolution<R(const Tensor&, const Tensor&, B, S, P, D, bool, OP, G)> {
  static R call(const Tensor& input, const Tensor& weight, B bias, S stride, P padding,
                D dilation, bool transposed, OP output_padding, G groups) {
    auto s = syms(stride); auto p = syms(padding); auto d = syms(dilation);
    auto op = syms(output_padding);
    return shim_convolution_impl(input, weight, bias, s, p, d, transposed, op, sym(groups));
  }
};
template <class Sig>
struct ShimConvolutionBackward;
template <class R, class BS, class S, class P, class D, class OP, class G, class M>
struct ShimConvolutionBackward<R(const Tensor&, const Tensor&, const Tensor&, BS, S, P, D, bool,
                                 OP, G, M)> {
  static R call(const Tensor& grad_output, const Tensor& input, const Tensor& weight,
                BS bias_sizes, S stride, P padding, D dilation, bool transposed,
                OP output_padding, G groups, M output_mask) {
    auto s = syms(stride); auto p = syms(padding); auto d = syms(dilation);
    auto op = syms(output_padding);
    return shim_convolution_backward_impl(grad_output, input, weight, bias_sizes, s, p, d,
                                          transposed, op, sym(groups), output_mask);
  }
};
using ShimConv = ShimConvolution<at::_ops::convolution::schema>;
using ShimConvBackward = ShimConvolutionBackward<at::_ops::convolution_backward::schema>;

// ---------------------------------------------------------------------------
// Control / introspection operators
// ---------------------------------------------------------------------------
bool set_shim_enabled(bool enabled) { return shim_flag().exchange(enabled); }
bool shim_enabled() { return shim_flag().load(); }

std::string routing_choice(const Tensor& input, const Tensor& weight, int64_t groups,
                           bool need_backward) {
  const int64_t sd = input.dim() - 2;
  std::vector<c10::SymInt> ones(sd > 0 ? sd : 1, c10::SymInt(1)), zeros(sd > 0 ? sd : 1, c10::SymInt(0));
  DwCase c = make_case(input, weight, ones, zeros, ones, false, zeros, c10::SymInt(groups));
  if (!c.ok) return "unsupported";
  return routing::name(choose(c, need_backward));
}

bool aten_has_cpu_depthwise_kernel() {
  auto op = c10::Dispatcher::singleton().findSchema({"aten::_conv_depthwise2d", ""});
  return op.has_value() && op->hasKernelForDispatchKey(c10::DispatchKey::CPU);
}

bool aten_registered = false;
bool registered_aten_kernels() { return aten_registered; }

// Run by torch_grouped_conv_register() (addon/csrc/Registration.h), not at load time: a
// registration the running torch refuses throws, and is undone there as a whole.
void register_operators(recipe_registration::Libraries& libs) {
  using recipe_registration::library;
  auto& ops = library(libs, torch::Library::DEF, "native_dwconv", c10::optional<c10::DispatchKey>(),
                      __FILE__, __LINE__);
  ops.def("conv_depthwise2d_backward(Tensor grad_output, Tensor self, Tensor weight, "
          "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
          "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  ops.def("set_shim_enabled(bool enabled) -> bool", TORCH_FN(set_shim_enabled));
  ops.def("shim_enabled() -> bool", TORCH_FN(shim_enabled));
  ops.def("routing_choice(Tensor input, Tensor weight, int groups, bool need_backward) -> str",
          TORCH_FN(routing_choice));
  ops.def("registered_aten_kernels() -> bool", TORCH_FN(registered_aten_kernels));
  library(libs, torch::Library::IMPL, "native_dwconv", c10::make_optional(c10::DispatchKey::CPU),
          __FILE__, __LINE__)
      .impl("conv_depthwise2d_backward", TORCH_FN(dw_backward));
  aten_registered = false;
  // aten CPU kernels, skipped when the running torch already has them: its own routing
  // already sends depthwise convs to the kernel.
  if (aten_has_cpu_depthwise_kernel()) return;
  auto& aten = library(libs, torch::Library::IMPL, "aten",
                       c10::make_optional(c10::DispatchKey::CPU), __FILE__, __LINE__);
  aten.impl("_conv_depthwise2d", TORCH_FN(DwForward::call));
  aten.impl("_conv_depthwise2d.out", TORCH_FN(DwOut::call));
  aten.impl("convolution", TORCH_FN(ShimConv::call));
  aten.impl("convolution_backward", TORCH_FN(ShimConvBackward::call));
  // AutogradCPU wins over the stock Autograd (alias key) kernel for CPU tensors only.
  library(libs, torch::Library::IMPL, "aten", c10::make_optional(c10::DispatchKey::AutogradCPU),
          __FILE__, __LINE__)
      .impl("_conv_depthwise2d", TORCH_FN(DwForwardAutograd::call));
  aten_registered = true;
}

const bool kRecorded = recipe_registration::add(register_operators);

}  // namespace
