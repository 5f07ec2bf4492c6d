#pragma once
// Which ONE kernel runs a grouped (groups > 1) 2-D CPU convolution.
//
// Installed into the PyTorch tree as aten/src/ATen/native/ConvRouting.h by the
// patch series, used by _select_conv_backend in Convolution.cpp; the out-of-tree
// native depthwise library uses it too, and the tests compile it on its own (plain
// C++17, no torch headers), so the policy is exercised on x86 and on aarch64.
//
// The caller answers, per backend, "can this backend run this exact case in one
// call?" with that backend's own check (use_mkldnn, xnnpack::use_convolution2d,
// use_cpu_depthwise3x3_winograd, native_depthwise_conv2d_supports,
// native_grouped_conv2d_supports). This header
// only decides the order. GroupLoop (one slow conv per group + cat) is the last
// resort and is always possible.
//
// Default order and why (see README "Routing"):
//   depthwise, NCHW      : Native, Winograd3x3, Xnnpack, Mkldnn
//       The native kernel reads NCHW directly, any size/stride/dilation/dtype.
//       oneDNN+ACL only has an NHWC depthwise kernel (NCHW falls back to a gemm
//       path), XNNPACK converts NCHW<->NHWC and repacks weights on each call.
//   depthwise, NHWC      : Mkldnn (ACL/JIT depthwise), Xnnpack, Native
//   grouped, inference   : ACL build: Xnnpack, NativeGrouped, Mkldnn
//                          other builds: Mkldnn, NativeGrouped, Xnnpack
//       ACL refuses grouped non-depthwise convs; oneDNN then runs its reference
//       gemm (gemm:ref, one call, a scalar loop); XNNPACK runs fp32 ones with
//       its IGEMM kernels, the native grouped kernel every dtype. Elsewhere
//       oneDNN's JIT comes first; the native kernel takes what it refuses
//       (oneDNN disabled or absent, fp16/bf16 on CPUs without them).
//   training (backward)  : depthwise: Native, Mkldnn
//                          grouped: ACL build: NativeGrouped, Mkldnn; others: Mkldnn, NativeGrouped
//       Winograd and XNNPACK are inference-only.
//
// Runtime override: PYTORCH_GROUPED_CONV_BACKEND=auto|mkldnn|xnnpack|winograd|native|loop
// forces one backend where that backend can run the case, else the default order
// applies. "native" means the native kernel for the case: the depthwise one for
// depthwise convs, the grouped one for the others.

#include <cstring>

namespace at::native::conv_routing {

enum class Kernel { None, Mkldnn, Xnnpack, Winograd3x3, NativeDepthwise, GroupLoop, NativeGrouped };

constexpr const char* kOverrideEnv = "PYTORCH_GROUPED_CONV_BACKEND";

struct Case {
  bool depthwise = false;      // groups == input channels (any channel multiplier)
  bool channels_last = false;  // input's suggested memory format is NHWC
  bool need_backward = false;  // autograd will call convolution_backward
  bool mkldnn_is_acl = false;  // oneDNN was built with the Arm Compute Library
  // Whether each single-kernel backend accepts this exact case.
  bool mkldnn = false;
  bool xnnpack = false;
  bool winograd = false;
  bool native = false;          // the native depthwise kernel
  bool native_grouped = false;  // the native grouped kernel
};

inline const char* name(Kernel k) {
  switch (k) {
    case Kernel::Mkldnn: return "mkldnn";
    case Kernel::Xnnpack: return "xnnpack";
    case Kernel::Winograd3x3: return "winograd";
    case Kernel::NativeDepthwise: return "native";
    case Kernel::NativeGrouped: return "native";
    case Kernel::GroupLoop: return "loop";
    case Kernel::None: break;
  }
  return "auto";
}

// nullptr, "" and "auto" mean no override (Kernel::None). Unknown text sets *ok = false.
inline Kernel parse(const char* text, bool* ok = nullptr) {
  if (ok) *ok = true;
  if (text == nullptr || *text == '\0' || std::strcmp(text, "auto") == 0) return Kernel::None;
  const Kernel all[] = {Kernel::Mkldnn, Kernel::Xnnpack, Kernel::Winograd3x3,
                        Kernel::NativeDepthwise, Kernel::GroupLoop};
  for (Kernel k : all) {
    if (std::strcmp(text, name(k)) == 0) return k;
  }
  if (ok) *ok = false;
  return Kernel::None;
}

// Can kernel k run this case as one call (GroupLoop: as groups calls)?
inline bool accepts(const Case& c, Kernel k) {
  switch (k) {
    case Kernel::Mkldnn: return c.mkldnn;
    case Kernel::Xnnpack: return c.xnnpack && !c.need_backward;
    case Kernel::Winograd3x3: return c.winograd && c.depthwise && !c.need_backward;
    case Kernel::NativeDepthwise: return c.native && c.depthwise;
    case Kernel::NativeGrouped: return c.native_grouped && !c.depthwise;
    case Kernel::GroupLoop: return true;
    case Kernel::None: break;
  }
  return false;
}

// The default preference list for this case; unused slots are Kernel::None.
struct Order {
  Kernel k[5] = {Kernel::None, Kernel::None, Kernel::None, Kernel::None, Kernel::None};
};

inline Order default_order(const Case& c) {
  if (c.need_backward) {
    if (c.depthwise) return Order{{Kernel::NativeDepthwise, Kernel::Mkldnn}};
    if (c.mkldnn_is_acl) return Order{{Kernel::NativeGrouped, Kernel::Mkldnn}};
    return Order{{Kernel::Mkldnn, Kernel::NativeGrouped}};
  }
  if (c.depthwise) {
    if (c.channels_last) {
      return Order{{Kernel::Mkldnn, Kernel::Xnnpack, Kernel::NativeDepthwise}};
    }
    return Order{{Kernel::NativeDepthwise, Kernel::Winograd3x3, Kernel::Xnnpack, Kernel::Mkldnn}};
  }
  if (c.mkldnn_is_acl) return Order{{Kernel::Xnnpack, Kernel::NativeGrouped, Kernel::Mkldnn}};
  return Order{{Kernel::Mkldnn, Kernel::NativeGrouped, Kernel::Xnnpack}};
}

// The kernel to run: the forced one if it accepts the case, else the first
// accepting kernel of the default order, else GroupLoop.
inline Kernel choose(const Case& c, Kernel forced = Kernel::None) {
  if (forced == Kernel::NativeDepthwise || forced == Kernel::NativeGrouped) {
    forced = c.depthwise ? Kernel::NativeDepthwise : Kernel::NativeGrouped;
  }
  if (forced != Kernel::None && accepts(c, forced)) return forced;
  for (Kernel k : default_order(c).k) {
    if (k != Kernel::None && accepts(c, k)) return k;
  }
  return Kernel::GroupLoop;
}

}  // namespace at::native::conv_routing
