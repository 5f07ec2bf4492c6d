// What the kernel sources need from ATen that torch 2.0 / 2.1 (JetPack 5's NVIDIA wheels) do
// not have. Force-included into every TU of the add-on build (recipe/addon.py, after
// addon/csrc/CapabilityDispatch.h); a no-op for torch >= 2.2, so the sources stay the ones the
// 2.6.0 patch series installs.
//
// * at::vec::load_to_float (2.5+): reduced-precision -> float loads. Here a plain conversion
//   through a float buffer (these releases' DEFAULT capability has no vector fp16/bf16 loads).
//
// Not here, because a header cannot change it: the operator schemas (2.1's convolution and
// _conv_depthwise2d take int[] where later releases take SymInt[]), and c10::optional being a
// class of its own in 2.1 (an alias of std::optional by 2.5). out_of_tree.cpp generates its
// kernels from the installed torch's schema types, and the sources spell c10::optional.
#pragma once

#include <torch/version.h>

// Only the kernel TUs (compiled with a CPU_CAPABILITY) use it.
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR <= 1 && defined(CPU_CAPABILITY)
#include <ATen/cpu/vec/vec.h>

namespace at {
namespace vec {
inline namespace CPU_CAPABILITY {

template <typename T>
inline void load_to_float(const T* data, Vectorized<float>& out) {
  float buf[Vectorized<float>::size()];
  for (int64_t i = 0; i < Vectorized<float>::size(); i++) {
    buf[i] = static_cast<float>(data[i]);
  }
  out = Vectorized<float>::loadu(buf);
}

template <typename T>
inline void load_to_float(const T* data, Vectorized<float>& out1, Vectorized<float>& out2) {
  load_to_float(data, out1);
  load_to_float(data + Vectorized<float>::size(), out2);
}

}  // namespace CPU_CAPABILITY
}  // namespace vec
}  // namespace at
#endif
