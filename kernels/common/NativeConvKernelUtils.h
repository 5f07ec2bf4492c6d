// Helpers shared by the native depthwise and grouped 2-D convolution kernels
// (DepthwiseConv2dNativeKernel.cpp, GroupedConv2dNativeKernel.cpp): index arithmetic, the
// output geometry, loads / stores of accumulation vectors from / to scalar_t memory, row copies and
// conversions.
//
// Kept in the torch-arm-recipe repository as kernels/common/NativeConvKernelUtils.h;
// installed into the PyTorch tree as aten/src/ATen/native/cpu/NativeConvKernelUtils.h (and
// staged there for the out-of-tree build, recipe/addon.py SHARED_HEADERS).
//
// Not a self-contained header, on purpose: a kernel TU includes it INSIDE its anonymous
// namespace, after its `template <typename T> using Vec = ...;` and after
// <ATen/cpu/vec/vec.h>, <ATen/cpu/vec/functional.h>, <cstring> and <type_traits>. The
// depthwise kernel includes it once per pass of its engines (plain at::vec, then its
// fp16-arithmetic vector type under a target pragma), so it has no include guard and
// everything in it takes the enclosing namespace's Vec and target.

template <typename T>
constexpr bool is_reduced_v =
    std::is_same_v<T, c10::Half> || std::is_same_v<T, c10::BFloat16>;

inline int64_t div_floor(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
inline int64_t div_ceil(int64_t a, int64_t b) {  // b > 0
  return -div_floor(-a, b);
}
inline int64_t round_up(int64_t a, int64_t b) {
  return div_ceil(a, b) * b;
}

// The fields every conv geometry struct has (N, C, OC, H, W, KH, KW, SH, SW, PH, PW, DH, DW,
// OH, OW) from the (already checked) tensors and arguments; a kh x kw kernel.
template <typename Geometry>
inline void fill_conv_geometry(Geometry& g, const Tensor& input, const Tensor& weight,
                               int64_t kh, int64_t kw, IntArrayRef stride, IntArrayRef padding,
                               IntArrayRef dilation) {
  g.N = input.size(0);
  g.C = input.size(1);
  g.H = input.size(2);
  g.W = input.size(3);
  g.OC = weight.size(0);
  g.KH = kh;
  g.KW = kw;
  g.SH = stride[0];
  g.SW = stride[1];
  g.PH = padding[0];
  g.PW = padding[1];
  g.DH = dilation[0];
  g.DW = dilation[1];
  g.OH = (g.H + 2 * g.PH - g.DH * (g.KH - 1) - 1) / g.SH + 1;
  g.OW = (g.W + 2 * g.PW - g.DW * (g.KW - 1) - 1) / g.SW + 1;
}

// ---------------------------------------------------------------------------
// Loads / stores of accumulation vectors from / to scalar_t memory.
// ---------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
struct IO {
  using AV = Vec<acc_t>;
  static constexpr int64_t L = AV::size();
  static constexpr bool kSame = std::is_same_v<scalar_t, acc_t>;

  // One vector (L elements).
  static inline AV load(const scalar_t* p) {
    if constexpr (kSame) {
      return AV::loadu(p);
    } else {
      static_assert(std::is_same_v<acc_t, float> && is_reduced_v<scalar_t>);
      AV out;
      at::vec::load_to_float<scalar_t>(p, out);
      return out;
    }
  }
  // Two vectors (2L elements).
  static inline void load2(const scalar_t* p, AV& a, AV& b) {
    if constexpr (kSame) {
      a = AV::loadu(p);
      b = AV::loadu(p + L);
    } else {
      auto ab = at::vec::convert_to_float<scalar_t>(Vec<scalar_t>::loadu(p));
      a = std::get<0>(ab);
      b = std::get<1>(ab);
    }
  }
  // First n (< L) elements, the rest zero.
  static inline AV load_partial(const scalar_t* p, int64_t n) {
    if constexpr (kSame) {
      return AV::loadu(p, n);  // zero-filled (masked load on AVX-512)
    } else {
      __at_align__ acc_t tmp[L];
      for (int64_t i = 0; i < L; ++i) tmp[i] = i < n ? static_cast<acc_t>(p[i]) : acc_t(0);
      return AV::loadu(tmp);
    }
  }
  static inline void store(scalar_t* p, const AV& v) {
    if constexpr (kSame) {
      v.store(p);
    } else {
      at::vec::convert_from_float<scalar_t>(v, v).store(p, L);
    }
  }
  static inline void store2(scalar_t* p, const AV& a, const AV& b) {
    if constexpr (kSame) {
      a.store(p);
      b.store(p + L);
    } else {
      at::vec::convert_from_float<scalar_t>(a, b).store(p);
    }
  }
  static inline void store_partial(scalar_t* p, const AV& v, int64_t n) {
    if constexpr (kSame) {
      v.store(p, n);
      return;
    }
    __at_align__ acc_t tmp[L];
    v.store(tmp);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(tmp[i]);
  }
};

// dst[i] = src[i], i < n: short rows inline (a memcpy call costs more than the copy).
template <typename T>
inline void copy_same(const T* src, T* dst, int64_t n) {
  constexpr int64_t L = Vec<T>::size();
  if (n >= 8 * L) {
    std::memcpy(dst, src, n * sizeof(T));
    return;
  }
  int64_t i = 0;
  for (; i + L <= n; i += L) Vec<T>::loadu(src + i).store(dst + i);
  if (i < n) Vec<T>::loadu(src + i, n - i).store(dst + i, n - i);
}

// dst[i] = (float) src[i], i < n, from fp16 / bf16 memory (two float vectors a step).
template <typename src_t>
inline void reduced_to_float(const src_t* src, float* dst, int64_t n) {
  static_assert(is_reduced_v<src_t>);
  constexpr int64_t L = Vec<float>::size();
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    auto ab = at::vec::convert_to_float<src_t>(Vec<src_t>::loadu(src + i));
    std::get<0>(ab).store(dst + i);
    std::get<1>(ab).store(dst + i + L);
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
