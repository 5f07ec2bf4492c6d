// What the kernel sources need from ATen that torch 2.0 / 2.1 (JetPack 5's NVIDIA wheels) do
// not have. Force-included into every TU of the add-on build (recipe/addon.py, after
// addon/csrc/CapabilityDispatch.h); a no-op for torch >= 2.2, so the sources stay the ones the
// 2.6.0 patch series installs.
//
// * at::vec::load_to_float (2.5+): reduced-precision -> float loads. Here a plain conversion
//   through a float buffer (these releases' DEFAULT capability has no vector fp16/bf16 loads).
// * AT_MKLDNN_ACL_ENABLED() (2.1+; 2.0's ATen/Config.h lacks it): 0. The routing policy reads
//   it only for grouped non-depthwise convs, which the add-on leaves to torch.
// * c10::SymInt::maybe_as_int() (2.1+): recipe_compat::maybe_as_int, from 2.0's
//   is_symbolic() / expect_int() there (out_of_tree.cpp calls it).
// * TensorBase::const_data_ptr / mutable_data_ptr (2.1+): 2.0's data_ptr (a const member
//   returning T*), by a macro: no 2.0 header uses either name.
// * at::vec::convert_to_float / convert_from_float (2.1+; 2.0 has them for BFloat16 only,
//   under other names): element-wise through a buffer, like load_to_float.
//
// Not here, because a header cannot change it: the operator schemas (2.1's convolution and
// _conv_depthwise2d take int[] where later releases take SymInt[]), and c10::optional being a
// class of its own in 2.1 (an alias of std::optional by 2.5). out_of_tree.cpp generates its
// kernels from the installed torch's schema types, and the sources spell c10::optional.
#pragma once

#include <torch/version.h>

// Up to 2.5 the NEON Vectorized<float> holds two float32x4_t (8 lanes): the kernel's in-register
// NEON transposes (written for 2.6's one-register vectors) give way to the generic ones.
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR <= 5
#define DWCONV_NEON_VEC128 0
#endif

#include <ATen/Config.h>
#include <c10/core/SymInt.h>
#include <c10/util/Optional.h>

#ifndef AT_MKLDNN_ACL_ENABLED
#define AT_MKLDNN_ACL_ENABLED() 0
#endif

namespace recipe_compat {
inline c10::optional<int64_t> maybe_as_int(const c10::SymInt& s) {
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 0
  if (s.is_symbolic()) return c10::optional<int64_t>();
  return s.expect_int();
#else
  return s.maybe_as_int();
#endif
}
}  // namespace recipe_compat

#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 0
#define const_data_ptr data_ptr
#define mutable_data_ptr data_ptr
#endif

// Only the kernel TUs (compiled with a CPU_CAPABILITY) use it.
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR <= 1 && defined(CPU_CAPABILITY)
#include <ATen/cpu/vec/vec.h>

#include <tuple>

namespace at {
namespace vec {
inline namespace CPU_CAPABILITY {

#if TORCH_VERSION_MINOR == 0
template <typename T>
inline std::tuple<Vectorized<float>, Vectorized<float>> convert_to_float(const Vectorized<T>& a) {
  constexpr int64_t L = Vectorized<float>::size();
  static_assert(Vectorized<T>::size() == 2 * L, "two float vectors per reduced-precision one");
  __at_align__ T src[2 * L];
  __at_align__ float buf[2 * L];
  a.store(src);
  for (int64_t i = 0; i < 2 * L; i++) buf[i] = static_cast<float>(src[i]);
  return std::make_tuple(Vectorized<float>::loadu(buf), Vectorized<float>::loadu(buf + L));
}

template <typename T>
inline Vectorized<T> convert_from_float(const Vectorized<float>& a, const Vectorized<float>& b) {
  constexpr int64_t L = Vectorized<float>::size();
  static_assert(Vectorized<T>::size() == 2 * L, "two float vectors per reduced-precision one");
  __at_align__ float buf[2 * L];
  __at_align__ T dst[2 * L];
  a.store(buf);
  b.store(buf + L);
  for (int64_t i = 0; i < 2 * L; i++) dst[i] = static_cast<T>(buf[i]);
  return Vectorized<T>::loadu(dst);
}
#endif

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
