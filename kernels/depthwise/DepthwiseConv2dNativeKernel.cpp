// Native CPU depthwise 2-D convolution kernels (forward, grad_input, grad_weight).
//
// Kept in the torch-arm-recipe repository as
// kernels/depthwise/DepthwiseConv2dNativeKernel.cpp; installed into the PyTorch
// tree as aten/src/ATen/native/cpu/DepthwiseConv2dNativeKernel.cpp, so the build
// compiles it once per CPU capability (x86: DEFAULT, AVX2, AVX512; aarch64:
// DEFAULT = NEON, SVE256 where the build enables it) with
// -DCPU_CAPABILITY=X -DCPU_CAPABILITY_X. Everything here is written with
// at::vec::Vectorized and at::parallel_for, so the same source becomes NEON,
// AVX2 or AVX-512 code.
//
// Three forward engines, chosen from the strides and shape (no copy of the whole
// input is ever made; grad_input / grad_weight: planar and channels-last):
//  * planar (fewer than L/2 channels, any strides): one task per (image, input
//    channel) plane.
//    Input rows are copied, converted to the accumulation type, into a small
//    ring of zero-padded rows (L1-resident); a horizontal stride s is handled by
//    de-interleaving each row into s phases while copying, so every tap reads a
//    contiguous vector. Output rows are vectorised over the output width with
//    4 independent accumulators; the m output channels of an input channel
//    share the ring.
//  * tiles (the default for C >= L/2, NCHW and channels-last alike): per (image,
//    block of L channels) and band of output rows, the input is brought into a
//    zero-padded channels-last tile (in-register L x L transposes for NCHW) and
//    computed vectorised over channels, then written back (transposed for NCHW).
//  * channels-last direct (C unit-stride, channel multiplier 1, mostly interior
//    outputs): reads the input in place, rows outer / channel blocks inner; the
//    weights of all channel blocks are transposed to [block][tap][channels] once
//    per call; the few border pixels take a bounds-checked path.
// Both channel-vectorised engines use, for KW in {3,5,7}, DW == 1, SW in {1,2}, a
// sliding-window row micro-kernel (slide_block: 12 (512-bit vectors) or 8 output
// pixels in registers, each input vector loaded once per kernel row and reused for
// all KW taps, KW weight vectors hoisted per kernel row, compile-time unrolled);
// other shapes use px_block (8 pixels, one weight load per 8 FMAs). On NEON
// (32 vector registers) the channels-last direct engine's 3x3 stride-1 and
// stride-2 cases, fp32 and fp16 with fp16 arithmetic, take column sweeps instead
// (sweep3_rows / sweep3s2_rows: 4 output rows x one channel vector, 9 weights in
// registers, each input column loaded once per band; fp32 3x3 stride 1: 9.01 ->
// 4.01 instructions per output on 384x56x56 under qemu -cpu neoverse-n1). In the
// channels-last direct engine the partial last vector (C % L != 0) of interior
// pixels also takes slide_block (masked loads / stores, any of those KW).
// grad_input is the gather form of the transposed conv (no atomics, no zero
// fill); grad_weight is parallel over channels (each task owns its channels'
// weights: no atomics) and always accumulates in fp32 (fp64 for double).
// Accumulation type of forward / grad_input: fp32 for fp16/bf16, except on CPUs with
// ARMv8.2-A fp16 vector arithmetic (Xavier's Carmel, Orin's A78AE, Graviton2+), where
// fp16 accumulates in fp16 (8 lanes per register instead of 4). One binary is right
// on ARMv8.0 and fast on ARMv8.2: the engines below are compiled twice in this TU
// (this file includes itself, DWCONV_KERNEL_BODY), once as they are and once under
// `#pragma GCC target("arch=armv8.2-a+fp16")` with a NEON fp16 vector type (namespace fp16_arith);
// the fp16 kernels pick the second at run time when the CPU reports asimdhp
// (getauxval(AT_HWCAP)). A TU already compiled with fp16 arithmetic (e.g.
// -march=armv8.2-a+fp16) uses it directly. See the tolerances in
// tests/test_native_depthwise.py and tests/test_native_depthwise_aarch64.py.

#ifndef DWCONV_KERNEL_BODY

#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/native/DepthwiseConv2dNative.h>

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/irange.h>

#ifndef AT_PER_OPERATOR_HEADERS
#include <ATen/Functions.h>
#else
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

// Compile-time fp16 accumulation: the TU itself has fp16 vector arithmetic AND
// Vectorized<Half> uses it (NEON; the SVE build of 2.6 has no native Vectorized<Half>).
#if !defined(DWCONV_FP16_ACCUM)
#if defined(__aarch64__) && defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC) && \
    !defined(CPU_CAPABILITY_SVE) && !defined(CPU_CAPABILITY_SVE256) && !defined(C10_MOBILE)
#define DWCONV_FP16_ACCUM 1
#else
#define DWCONV_FP16_ACCUM 0
#endif
#endif

// Run-time fp16 accumulation: an ARMv8.0 NEON TU (the DEFAULT capability of every
// aarch64 torch) also carries an fp16-arithmetic copy of the engines, chosen per call
// from the CPU's features. GCC only (its target pragma; Linux for getauxval).
#if defined(__aarch64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !DWCONV_FP16_ACCUM && !defined(CPU_CAPABILITY_SVE) && !defined(CPU_CAPABILITY_SVE256) && \
    !defined(C10_MOBILE)
#define DWCONV_FP16_RUNTIME 1
#include <arm_neon.h>
#include <sys/auxv.h>
#ifndef HWCAP_FPHP
#define HWCAP_FPHP (1 << 9)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#else
#define DWCONV_FP16_RUNTIME 0
#endif

// Full unrolling of the small register-block loops (accumulators stay in registers).
#if defined(__clang__)
#define DWCONV_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define DWCONV_UNROLL _Pragma("GCC unroll 16")
#else
#define DWCONV_UNROLL
#endif

namespace at::native {
namespace {

// Pass 1 (every build): at::vec::Vectorized for every type.
template <typename T>
using Vec = at::vec::Vectorized<T>;
template <typename V>
inline V vfmadd(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
template <typename V>
inline auto vinterleave2(const V& a, const V& b) { return at::vec::interleave2(a, b); }

// Accumulation type of forward and grad_input.
template <typename scalar_t>
struct AccOf { using type = at::opmath_type<scalar_t>; };
#if DWCONV_FP16_ACCUM
template <>
struct AccOf<c10::Half> { using type = c10::Half; };
#endif

#define DWCONV_KERNEL_BODY 1
#include "DepthwiseConv2dNativeKernel.cpp"  // this file: the engines below
#undef DWCONV_KERNEL_BODY

}  // namespace
}  // namespace at::native

#if DWCONV_FP16_RUNTIME
// Pass 2: the same engines for fp16 with fp16 vector arithmetic (FEAT_FP16). Only
// reached when the CPU has it (use_fp16_arith); everything defined in this region has
// internal linkage, so no fp16 instruction leaks into code shared with pass 1.
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+fp16")  // as arm_neon.h declares the fp16 intrinsics
namespace at::native {
namespace {
namespace fp16_arith {

// The subset of Vectorized<c10::Half>'s interface the engines use, with the
// arithmetic of vec128_half_neon.h under __ARM_FEATURE_FP16_VECTOR_ARITHMETIC
// (fused multiply-add, zero-filled partial loads): the results match a TU compiled
// with -march=armv8.2-a+fp16 bit for bit.
struct HalfVec {
  float16x8_t values;
  static constexpr int64_t size() { return 8; }
  HalfVec() = default;
  HalfVec(float16x8_t v) : values(v) {}
  HalfVec(c10::Half h) : values(vreinterpretq_f16_u16(vdupq_n_u16(h.x))) {}
  static HalfVec loadu(const void* p, int64_t count = size()) {
    if (count == size()) return vld1q_f16(static_cast<const float16_t*>(p));
    __at_align__ uint16_t tmp[size()] = {};
    std::memcpy(tmp, p, count * sizeof(uint16_t));
    return vreinterpretq_f16_u16(vld1q_u16(tmp));
  }
  void store(void* p, int64_t count = size()) const {
    if (count == size()) {
      vst1q_f16(static_cast<float16_t*>(p), values);
      return;
    }
    __at_align__ uint16_t tmp[size()];
    vst1q_u16(tmp, vreinterpretq_u16_f16(values));
    std::memcpy(p, tmp, count * sizeof(uint16_t));
  }
};
inline HalfVec operator+(const HalfVec& a, const HalfVec& b) { return vaddq_f16(a.values, b.values); }
inline HalfVec operator*(const HalfVec& a, const HalfVec& b) { return vmulq_f16(a.values, b.values); }
inline HalfVec vfmadd(const HalfVec& a, const HalfVec& b, const HalfVec& c) {
  return vfmaq_f16(c.values, a.values, b.values);  // c + a * b, one rounding
}
inline std::pair<HalfVec, HalfVec> vinterleave2(const HalfVec& a, const HalfVec& b) {
  return {vzip1q_f16(a.values, b.values), vzip2q_f16(a.values, b.values)};
}
// Every other type keeps at::vec (these names hide pass 1's inside this namespace).
template <typename V>
inline V vfmadd(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
template <typename V>
inline auto vinterleave2(const V& a, const V& b) { return at::vec::interleave2(a, b); }

template <typename T>
using Vec = std::conditional_t<std::is_same_v<T, c10::Half>, HalfVec, at::vec::Vectorized<T>>;
template <typename scalar_t>
struct AccOf { using type = at::opmath_type<scalar_t>; };
template <>
struct AccOf<c10::Half> { using type = c10::Half; };

#define DWCONV_KERNEL_BODY 2
#include "DepthwiseConv2dNativeKernel.cpp"  // this file: the engines below
#undef DWCONV_KERNEL_BODY

}  // namespace fp16_arith
}  // namespace
}  // namespace at::native
#pragma GCC pop_options
#endif  // DWCONV_FP16_RUNTIME

namespace at::native {
namespace {

#if DWCONV_FP16_RUNTIME
// ARMv8.2-A fp16 arithmetic, scalar and vector (Linux hwcaps fphp + asimdhp; under
// qemu-user: what its -cpu model has). FEAT_FP16 exists only from ARMv8.2-A on, so such
// a CPU also runs the rest of armv8.2-a that pass 2 is compiled for. Read once.
bool use_fp16_arith() {
  static const bool has = [] {
    const unsigned long want = HWCAP_FPHP | HWCAP_ASIMDHP;
    return (getauxval(AT_HWCAP) & want) == want;
  }();
  return has;
}
#endif

void native_depthwise_conv2d_forward_kernel(
    const Tensor& output, const Tensor& input, const Tensor& weight, const Tensor& bias,
    IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  if (output.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "native_depthwise_conv2d_forward", [&] {
#if DWCONV_FP16_RUNTIME
    if (std::is_same_v<scalar_t, c10::Half> && use_fp16_arith()) {
      fp16_arith::forward_impl<c10::Half>(output, input, weight, bias, kernel_size, stride,
                                          padding, dilation);
      return;
    }
#endif
    forward_impl<scalar_t>(output, input, weight, bias, kernel_size, stride, padding, dilation);
  });
}

std::tuple<Tensor, Tensor> native_depthwise_conv2d_backward_kernel(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight,
    IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
    std::array<bool, 2> output_mask) {
  Tensor grad_input, grad_weight;
  if (output_mask[0]) {
    grad_input = at::empty(input.sizes(),
                           input.options().memory_format(input.suggest_memory_format()));
  }
  if (output_mask[1]) {
    grad_weight = at::empty(weight.sizes(), weight.options().memory_format(at::MemoryFormat::Contiguous));
  }
  if (input.size(0) == 0 || input.numel() == 0) {
    if (grad_weight.defined()) grad_weight.zero_();
    if (grad_input.defined()) grad_input.zero_();
    return std::make_tuple(grad_input, grad_weight);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "native_depthwise_conv2d_backward", [&] {
    if (grad_input.defined()) {
#if DWCONV_FP16_RUNTIME
      if (std::is_same_v<scalar_t, c10::Half> && use_fp16_arith()) {
        fp16_arith::grad_input_impl<c10::Half>(grad_input, grad_output, input, weight,
                                               kernel_size, stride, padding, dilation);
      } else
#endif
      grad_input_impl<scalar_t>(grad_input, grad_output, input, weight, kernel_size, stride,
                                padding, dilation);
    }
    if (grad_weight.defined()) {
      grad_weight_impl<scalar_t>(grad_weight, grad_output, input, weight, kernel_size, stride,
                                 padding, dilation);
    }
  });
  return std::make_tuple(grad_input, grad_weight);
}

}  // namespace

// REGISTER_DISPATCH leaves the AVX512 slot empty on purpose in PyTorch (AVX2 is
// used instead); this kernel is measured faster with AVX-512 where the CPU has
// it, so it registers that slot too (as DepthwiseConvKernel.cpp does).
ALSO_REGISTER_AVX512_DISPATCH(native_depthwise_conv2d_forward_stub, &native_depthwise_conv2d_forward_kernel)
ALSO_REGISTER_AVX512_DISPATCH(native_depthwise_conv2d_backward_stub, &native_depthwise_conv2d_backward_kernel)

}  // namespace at::native

#else  // DWCONV_KERNEL_BODY: the engines, once per pass (see the top of the file)

template <typename scalar_t>
using acc_of = typename AccOf<scalar_t>::type;

// is_reduced_v, div_floor / div_ceil / round_up, fill_conv_geometry, IO<scalar_t, acc_t>,
// copy_same, reduced_to_float: shared with the grouped kernel, with this pass's Vec.
#include <ATen/native/cpu/NativeConvKernelUtils.h>

// dst[i] = (dst_t) src[i * ss], i < n (vectorised when unit-stride).
template <typename src_t, typename dst_t>
inline void convert_row(const src_t* src, int64_t ss, dst_t* dst, int64_t n) {
  if (n <= 0) return;
  if (ss == 1) {
    if constexpr (std::is_same_v<src_t, dst_t>) {
      copy_same(src, dst, n);
      return;
    } else if constexpr (std::is_same_v<dst_t, float> && is_reduced_v<src_t>) {
      reduced_to_float(src, dst, n);
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<dst_t>(src[i * ss]);
}

// ---------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------
struct Geo {
  int64_t N, C, M, OC, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW;
  int64_t K() const { return KH * KW; }
};

Geo make_geo(const Tensor& input, const Tensor& weight, IntArrayRef kernel_size,
             IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  Geo g;
  fill_conv_geometry(g, input, weight, kernel_size[0], kernel_size[1], stride, padding,
                     dilation);
  g.M = g.C > 0 ? g.OC / g.C : 1;
  return g;
}

// Weights of output channel oc as acc_t, [kh][kw].
template <typename scalar_t, typename acc_t>
inline void load_weights(const Tensor& weight, int64_t oc, acc_t* dst) {
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const int64_t s0 = weight.stride(0), s2 = weight.stride(2), s3 = weight.stride(3);
  const int64_t KH = weight.size(2), KW = weight.size(3);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw)
      dst[kh * KW + kw] = static_cast<acc_t>(w[oc * s0 + kh * s2 + kw * s3]);
}

// ---------------------------------------------------------------------------
// Planar engine: rows of `n` outputs, out[t] = init + sum_i wts[i] * ptrs[i][t].
// ptrs[i][t] may be read up to round_up(n, L) (the row buffers have the slack).
// ---------------------------------------------------------------------------
template <typename acc_t, int U>
inline void dot_block(const acc_t* const* ptrs, const acc_t* wts, int64_t nt, int64_t t,
                      acc_t init, Vec<acc_t>* acc) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  for (int u = 0; u < U; ++u) acc[u] = AV(init);
  for (int64_t i = 0; i < nt; ++i) {
    const acc_t* p = ptrs[i] + t;
    const AV w(wts[i]);
    for (int u = 0; u < U; ++u) acc[u] = vfmadd(AV::loadu(p + u * L), w, acc[u]);
  }
}

template <typename scalar_t, typename acc_t>
void conv_row(scalar_t* out, int64_t os, int64_t n, const acc_t* const* ptrs,
              const acc_t* wts, int64_t nt, acc_t init) {
  using AV = Vec<acc_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[4];
  int64_t t = 0;
  if (os == 1) {
    for (; t + 4 * L <= n; t += 4 * L) {
      dot_block<acc_t, 4>(ptrs, wts, nt, t, init, acc);
      io::store2(out + t, acc[0], acc[1]);
      io::store2(out + t + 2 * L, acc[2], acc[3]);
    }
    if (t + 2 * L <= n) {
      dot_block<acc_t, 2>(ptrs, wts, nt, t, init, acc);
      io::store2(out + t, acc[0], acc[1]);
      t += 2 * L;
    }
    if (t + L <= n) {
      dot_block<acc_t, 1>(ptrs, wts, nt, t, init, acc);
      io::store(out + t, acc[0]);
      t += L;
    }
    if (t < n) {
      dot_block<acc_t, 1>(ptrs, wts, nt, t, init, acc);
      io::store_partial(out + t, acc[0], n - t);
    }
    return;
  }
  // Strided output row (e.g. channels_last output of a planar input).
  __at_align__ acc_t tmp[4 * L];
  for (; t < n; t += 4 * L) {
    dot_block<acc_t, 4>(ptrs, wts, nt, t, init, acc);
    for (int u = 0; u < 4; ++u) acc[u].store(tmp + u * L);
    const int64_t cnt = std::min<int64_t>(4 * L, n - t);
    for (int64_t i = 0; i < cnt; ++i) out[(t + i) * os] = static_cast<scalar_t>(tmp[i]);
  }
}

// A ring of zero-padded, phase-de-interleaved input rows (planar engine).
// Padded column P = iw + PW lives in phase P % SW at index P / SW; output column
// ow, tap kw reads phase (kw*DW) % SW at index ow + (kw*DW) / SW: contiguous in ow.
template <typename buf_t>
struct RowRing {
  int64_t SW, PW, W, PL, RS, NR;
  std::vector<buf_t> buf;
  std::vector<int64_t> row_of_slot;

  RowRing(const Geo& g, int64_t out_cols_rounded) {
    SW = g.SW;
    PW = g.PW;
    W = g.W;
    PL = out_cols_rounded + (g.DW * (g.KW - 1)) / g.SW + 1;
    RS = SW * PL;
    NR = g.DH * (g.KH - 1) + 1;
    buf.assign(NR * RS, buf_t(0));  // pads stay zero for the ring's lifetime
    row_of_slot.assign(NR, -1);
  }
  void reset() { std::fill(row_of_slot.begin(), row_of_slot.end(), -1); }
  // Offset of tap kw inside a row buffer.
  int64_t tap_offset(int64_t kw, int64_t DW) const {
    return ((kw * DW) % SW) * PL + (kw * DW) / SW;
  }
  template <typename scalar_t>
  const buf_t* row(int64_t ih, const scalar_t* src, int64_t sW) {
    const int64_t slot = ih % NR;
    buf_t* dst = buf.data() + slot * RS;
    if (row_of_slot[slot] != ih) {
      row_of_slot[slot] = ih;
      if (SW == 1) {
        convert_row(src, sW, dst + PW, std::min(W, PL - PW));
      } else {
        for (int64_t r = 0; r < SW; ++r) {
          const int64_t lo = std::max<int64_t>(0, div_ceil(PW - r, SW));
          const int64_t hi = std::min<int64_t>(PL, div_ceil(PW + W - r, SW));
          buf_t* d = dst + r * PL;
          for (int64_t idx = lo; idx < hi; ++idx)
            d[idx] = static_cast<buf_t>(src[(r + SW * idx - PW) * sW]);
        }
      }
    }
    return dst;
  }
};

// Forward, planar. Per (image, input channel) plane and band of output rows, the
// input is copied (converted to acc_t) into SH*SW zero-padded "phase planes":
// padded row R = ih + PH goes to row phase R % SH at row R / SH, padded column
// P = iw + PW to column phase P % SW at column P / SW. All phase planes share one
// pitch PLc, so output (oh, ow) <- tap (kh, kw) reads
//   plane[(kh*DH) % SH][(kw*DW) % SW][oh + (kh*DH)/SH][ow + (kw*DW)/SW]
// i.e. flat index oh*PLc + ow plus a constant per tap: the whole band is ONE 1-D
// correlation over the flattened planes (no per-row setup, no border branches,
// short rows of small maps share vectors), written to a flat buffer with pitch PLc
// and then copied (converted) to the output rows.
struct PlanarLayout {
  int64_t PLc;   // pitch of every phase plane (columns)
  int64_t RB;    // output rows per band
  int64_t RR;    // rows per phase plane that hold data
  int64_t PP;    // elements per phase plane (RR rows + one slack row + vector slack)
  int64_t nplanes;
  std::vector<int64_t> off;  // per tap (kh*KW + kw)
};

template <typename acc_t>
PlanarLayout planar_layout(const Geo& g, int64_t budget_bytes) {
  constexpr int64_t L = Vec<acc_t>::size();
  PlanarLayout pl;
  pl.PLc = g.OW + (g.DW * (g.KW - 1)) / g.SW;
  pl.nplanes = g.SH * g.SW;
  const int64_t extra_rows = (g.DH * (g.KH - 1)) / g.SH;
  const int64_t row_bytes = pl.nplanes * pl.PLc * static_cast<int64_t>(sizeof(acc_t));
  // RR = RB + extra_rows rows per plane; keep the band within the budget.
  int64_t rb = budget_bytes / std::max<int64_t>(1, row_bytes) - extra_rows - 1;
  pl.RB = std::max<int64_t>(1, std::min<int64_t>(g.OH, rb));
  pl.RR = pl.RB + extra_rows;
  pl.PP = (pl.RR + 1) * pl.PLc + 4 * L;
  pl.off.resize(g.K());
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t plane = ((kh * g.DH) % g.SH) * g.SW + (kw * g.DW) % g.SW;
      pl.off[kh * g.KW + kw] =
          plane * pl.PP + ((kh * g.DH) / g.SH) * pl.PLc + (kw * g.DW) / g.SW;
    }
  }
  return pl;
}

// Row of W unit-stride inputs -> two column phases (padded column P = iw + PW goes to
// phase P % 2, index P / 2, index < PLc), vectorised with deinterleave2.
template <typename scalar_t, typename acc_t>
void deinterleave2_row(const scalar_t* src, int64_t PW, int64_t W, int64_t PLc, acc_t* d0,
                       acc_t* d1) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  // pairs (P = 2i, 2i + 1) fully inside the row: 0 <= 2i - PW and 2i + 1 - PW < W
  const int64_t i_lo = div_ceil(PW, 2);
  const int64_t i_hi = std::min<int64_t>(PLc, div_floor(PW + W - 2, 2) + 1);
  int64_t i = i_lo;
  if constexpr (std::is_same_v<acc_t, float> || std::is_same_v<acc_t, double>) {
    for (; i + L <= i_hi; i += L) {
      const scalar_t* s = src + (2 * i - PW);
      AV a, b;
      IO<scalar_t, acc_t>::load2(s, a, b);
      auto eo = at::vec::deinterleave2(a, b);
      std::get<0>(eo).store(d0 + i);
      std::get<1>(eo).store(d1 + i);
    }
  }
  auto put = [&](int64_t P) {
    const int64_t iw = P - PW;
    if (iw < 0 || iw >= W || P / 2 >= PLc) return;
    ((P & 1) ? d1 : d0)[P / 2] = static_cast<acc_t>(src[iw]);
  };
  for (int64_t P = PW; P < 2 * i_lo; ++P) put(P);  // leading odd column, if any
  for (int64_t P = 2 * i; P < PW + W; ++P) put(P);   // the rest
}

// Copies the input rows of output rows [oh0, oh0 + RB) into the phase planes;
// rows in the vertical padding become zero, column pads are never written (zero).
// colo/cohi: per column phase, the range of indices holding real columns.
template <typename scalar_t, typename acc_t>
void load_band(const Geo& g, const PlanarLayout& pl, acc_t* buf, const scalar_t* plane,
               int64_t iH, int64_t iW, int64_t oh0, const int64_t* colo, const int64_t* cohi) {
  for (int64_t rp = 0; rp < g.SH; ++rp) {
    int64_t ih = (oh0 * g.SH + rp) - g.PH;  // padded row (oh0 + ri) * SH + rp
    for (int64_t ri = 0; ri < pl.RR; ++ri, ih += g.SH) {
      const bool real = ih >= 0 && ih < g.H;
      acc_t* d0 = buf + rp * g.SW * pl.PP + ri * pl.PLc;
      if (!real) {
        for (int64_t cp = 0; cp < g.SW; ++cp) {
          if (cohi[cp] > colo[cp]) std::fill(d0 + cp * pl.PP + colo[cp], d0 + cp * pl.PP + cohi[cp], acc_t(0));
        }
        continue;
      }
      const scalar_t* srow = plane + ih * iH;
      if (g.SW == 1) {
        convert_row(srow + (colo[0] - g.PW) * iW, iW, d0 + colo[0], cohi[0] - colo[0]);
      } else if (g.SW == 2 && iW == 1) {  // both column phases at once
        deinterleave2_row(srow, g.PW, g.W, pl.PLc, d0, d0 + pl.PP);
      } else {
        for (int64_t cp = 0; cp < g.SW; ++cp) {
          if (cohi[cp] <= colo[cp]) continue;
          convert_row(srow + (cp + g.SW * colo[cp] - g.PW) * iW, g.SW * iW, d0 + cp * pl.PP + colo[cp],
                      cohi[cp] - colo[cp]);
        }
      }
    }
  }
}

// U vectors of out[j..] = init + sum_k w[k] * buf[off[k] + j], with two accumulator
// sets (even / odd taps) so the FMA latency chains are half as long.
template <typename acc_t, int U>
inline void corr_block(acc_t* out, int64_t j, const acc_t* buf, const int64_t* off,
                       const acc_t* w, int64_t K, acc_t init) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV a[U], c[U];
  DWCONV_UNROLL
  for (int u = 0; u < U; ++u) {
    a[u] = AV(init);
    c[u] = AV(acc_t(0));
  }
  int64_t k = 0;
  for (; k + 1 < K; k += 2) {
    const acc_t* p = buf + off[k] + j;
    const acc_t* q = buf + off[k + 1] + j;
    const AV wp(w[k]), wq(w[k + 1]);
    DWCONV_UNROLL
    for (int u = 0; u < U; ++u) {
      a[u] = vfmadd(AV::loadu(p + u * L), wp, a[u]);
      c[u] = vfmadd(AV::loadu(q + u * L), wq, c[u]);
    }
  }
  if (k < K) {
    const acc_t* p = buf + off[k] + j;
    const AV wp(w[k]);
    for (int u = 0; u < U; ++u) a[u] = vfmadd(AV::loadu(p + u * L), wp, a[u]);
  }
  for (int u = 0; u < U; ++u) (a[u] + c[u]).store(out + j + u * L);
}

// out[j] = init + sum_k w[k] * buf[off[k] + j] for j < round_up(n, L) (<= round_up(n, 4L)).
template <typename acc_t>
void corr_flat(acc_t* out, int64_t n, const acc_t* buf, const int64_t* off, const acc_t* w,
               int64_t K, acc_t init) {
  constexpr int64_t L = Vec<acc_t>::size();
  int64_t j = 0;
  for (; j + 3 * L < n; j += 4 * L) corr_block<acc_t, 4>(out, j, buf, off, w, K, init);
  const int64_t rest = div_ceil(n - j, L);
  if (rest == 3) corr_block<acc_t, 3>(out, j, buf, off, w, K, init);
  else if (rest == 2) corr_block<acc_t, 2>(out, j, buf, off, w, K, init);
  else if (rest == 1) corr_block<acc_t, 1>(out, j, buf, off, w, K, init);
}

// dst[i * ds] = (dst_t) src[i], i < n: the output side of the planar engine.
template <typename src_t, typename dst_t>
inline void store_row(const src_t* src, dst_t* dst, int64_t ds, int64_t n) {
  if (ds == 1) {
    if constexpr (std::is_same_v<src_t, dst_t>) {
      convert_row(src, 1, dst, n);
      return;
    } else if constexpr (std::is_same_v<src_t, float> && is_reduced_v<dst_t>) {
      constexpr int64_t L = Vec<float>::size();
      int64_t i = 0;
      for (; i + 2 * L <= n; i += 2 * L) {
        at::vec::convert_from_float<dst_t>(Vec<float>::loadu(src + i),
                                           Vec<float>::loadu(src + i + L)).store(dst + i);
      }
      for (; i < n; ++i) dst[i] = static_cast<dst_t>(src[i]);
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) dst[i * ds] = static_cast<dst_t>(src[i]);
}

// rows x ow values (pitch `pitch` in src) -> contiguous dst (pitch ow). `room` is how
// many elements from dst on belong to this plane: full-vector stores may spill into
// the next row's place (rewritten right after) but never past the plane.
template <typename src_t, typename dst_t>
inline void store_rows_packed(const src_t* src, int64_t pitch, dst_t* dst, int64_t rows,
                              int64_t ow, int64_t room) {
  if constexpr (std::is_same_v<src_t, dst_t>) {
    using AV = Vec<dst_t>;
    constexpr int64_t L = AV::size();
    if (ow < 2 * L) {
      for (int64_t r = 0; r < rows; ++r) {
        const src_t* s = src + r * pitch;
        dst_t* d = dst + r * ow;
        const int64_t left = room - r * ow;
        int64_t i = 0;
        for (; i + L <= ow; i += L) AV::loadu(s + i).store(d + i);
        if (i < ow) {
          if (i + L <= left) {
            AV::loadu(s + i).store(d + i);  // spills into the next row, rewritten next
          } else {
            AV::loadu(s + i).store(d + i, ow - i);
          }
        }
      }
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r) store_row(src + r * pitch, dst + r * ow, 1, ow);
}

template <typename scalar_t>
void forward_planar(const Geo& g, const Tensor& output, const Tensor& input,
                    const Tensor& weight, const Tensor& bias) {
  using acc_t = acc_of<scalar_t>;
  constexpr int64_t L = Vec<acc_t>::size();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const int64_t bs = bias.defined() ? bias.stride(0) : 0;
  const int64_t iN = input.stride(0), iC = input.stride(1), iH = input.stride(2), iW = input.stride(3);
  const int64_t oN = output.stride(0), oC = output.stride(1), oH = output.stride(2), oW = output.stride(3);
  const int64_t K = g.K();
  const PlanarLayout pl = planar_layout<acc_t>(g, 24 * 1024);
  const int64_t work = std::max<int64_t>(1, g.OH * g.OW * K * g.M);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);

  const int64_t nbands = div_ceil(g.OH, pl.RB);
  const bool out_planes_contiguous = oW == 1 && oH == g.OW;

  at::parallel_for(0, g.N * g.C, grain, [&](int64_t begin, int64_t end) {
    // Two band buffers: the next band is copied in before the current one is
    // computed, so the (partly masked) stores of the copy have retired before the
    // correlation loads them (store-to-load forwarding stalls on short rows).
    std::vector<acc_t> bufs[2] = {std::vector<acc_t>(pl.nplanes * pl.PP, acc_t(0)),
                                  std::vector<acc_t>(pl.nplanes * pl.PP, acc_t(0))};
    std::vector<acc_t> flat(round_up(pl.RB * pl.PLc, 4 * L) + 4 * L);
    std::vector<acc_t> wall(g.M * K), binit(g.M);
    std::vector<int64_t> colo(g.SW), cohi(g.SW);
    for (int64_t cp = 0; cp < g.SW; ++cp) {
      // real columns of phase cp: idx with 0 <= cp + SW*idx - PW < W, idx < PLc
      colo[cp] = std::max<int64_t>(0, div_ceil(g.PW - cp, g.SW));
      cohi[cp] = std::min<int64_t>(pl.PLc, div_ceil(g.PW + g.W - cp, g.SW));
    }
    auto load_item = [&](int64_t item, acc_t* dst) {
      const int64_t task = item / nbands, band = item % nbands;
      const int64_t n = task / g.C, c = task % g.C;
      load_band<scalar_t, acc_t>(g, pl, dst, in + n * iN + c * iC, iH, iW, band * pl.RB,
                                 colo.data(), cohi.data());
    };
    const int64_t first = begin * nbands, last = end * nbands;
    load_item(first, bufs[0].data());
    for (int64_t item = first; item < last; ++item) {
      const acc_t* buf = bufs[(item - first) & 1].data();
      if (item + 1 < last) load_item(item + 1, bufs[(item + 1 - first) & 1].data());
      const int64_t task = item / nbands, band = item % nbands;
      const int64_t n = task / g.C, c = task % g.C;
      if (band == 0) {
        for (int64_t j = 0; j < g.M; ++j) {
          load_weights<scalar_t, acc_t>(weight, c * g.M + j, wall.data() + j * K);
          binit[j] = b ? static_cast<acc_t>(b[(c * g.M + j) * bs]) : acc_t(0);
        }
      }
      const int64_t oh0 = band * pl.RB;
      const int64_t rows = std::min<int64_t>(pl.RB, g.OH - oh0);
      const int64_t nflat = (rows - 1) * pl.PLc + g.OW;
      for (int64_t j = 0; j < g.M; ++j) {
        corr_flat<acc_t>(flat.data(), nflat, buf, pl.off.data(), wall.data() + j * K, K,
                         binit[j]);
        scalar_t* oplane = out + n * oN + (c * g.M + j) * oC;
        if (out_planes_contiguous) {
          store_rows_packed(flat.data(), pl.PLc, oplane + oh0 * g.OW, rows, g.OW,
                            (g.OH - oh0) * g.OW);
        } else {
          for (int64_t r = 0; r < rows; ++r)
            store_row(flat.data() + r * pl.PLc, oplane + (oh0 + r) * oH, oW, g.OW);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Pixel-block micro-kernel shared by the tile and channels-last engines:
// P output pixels x U channel vectors,
//   out[p] = bias + sum_i wt[i] * x[base[p] + toff[i]]   (i < nt)
// Each weight vector is loaded once for P pixels; P*U independent accumulators.
// ---------------------------------------------------------------------------
template <typename in_t, typename out_t, typename acc_t, int P, int U>
inline void px_block(const in_t* const* base, const int64_t* toff, int64_t nt,
                     const acc_t* wt, int64_t wstride, const acc_t* bias, out_t* out,
                     int64_t ostep) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[P * U];
  const in_t* bp[P];
  DWCONV_UNROLL
  for (int p = 0; p < P; ++p) bp[p] = base[p];
  DWCONV_UNROLL
  for (int x = 0; x < P * U; ++x) acc[x] = AV::loadu(bias + (x % U) * L);
  for (int64_t i = 0; i < nt; ++i) {
    const int64_t o = toff[i];
    const acc_t* wi = wt + i * wstride;
    DWCONV_UNROLL
    for (int x = 0; x < P * U; ++x)
      acc[x] = vfmadd(IO<in_t, acc_t>::load(bp[x / U] + o + (x % U) * L),
                      AV::loadu(wi + (x % U) * L), acc[x]);
  }
  DWCONV_UNROLL
  for (int x = 0; x < P * U; ++x)
    IO<out_t, acc_t>::store(out + (x / U) * ostep + (x % U) * L, acc[x]);
}

// n pixels (bases[0..n)) in blocks of 8 (U == 1) or 4, then 4, 2, 1.
template <typename in_t, typename out_t, typename acc_t, int U>
inline void px_run(const in_t* const* bases, int64_t n, const int64_t* toff, int64_t nt,
                   const acc_t* wt, int64_t wstride, const acc_t* bias, out_t* out,
                   int64_t ostep) {
  constexpr int P = U == 1 ? 8 : (U == 2 ? 4 : 2);
  int64_t p = 0;
  for (; p + P <= n; p += P)
    px_block<in_t, out_t, acc_t, P, U>(bases + p, toff, nt, wt, wstride, bias, out + p * ostep, ostep);
  if (P > 4 && p + 4 <= n) {
    px_block<in_t, out_t, acc_t, (P > 4 ? 4 : 1), U>(bases + p, toff, nt, wt, wstride, bias, out + p * ostep, ostep);
    p += 4;
  }
  if (P > 2 && p + 2 <= n) {
    px_block<in_t, out_t, acc_t, (P > 2 ? 2 : 1), U>(bases + p, toff, nt, wt, wstride, bias, out + p * ostep, ostep);
    p += 2;
  }
  if (p < n)
    px_block<in_t, out_t, acc_t, 1, U>(bases + p, toff, nt, wt, wstride, bias, out + p * ostep, ostep);
}

// ---------------------------------------------------------------------------
// Sliding-window row micro-kernel (tile engine, KW in {3, 5, 7}, DW == 1,
// SW in {1, 2}): P consecutive output pixels of one row x one channel vector.
// Per kernel row the KW weight vectors are loaded once, and every input vector
// of the row segment is loaded once and used for all (pixel, kw) pairs that read
// it: (P-1)*SW + KW loads for P*KW FMAs (px_block: P*KW + KW). The loops are
// compile-time (index_sequence folds), so the accumulators and weights live in
// registers. Per pixel the taps are summed in the same (kh, kw) order as px_block.
// ---------------------------------------------------------------------------
template <typename F, std::size_t... I>
inline void static_for_impl(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<int, static_cast<int>(I)>{}), ...);
}
template <int N, typename F>
inline void static_for(F&& f) {
  static_for_impl(std::forward<F>(f), std::make_index_sequence<N>{});
}

// PT: only the first cnt (< L) channels of each pixel are read / written (the
// partial last vector of the channels-last engine; weights and bias zero-padded).
template <typename in_t, typename acc_t, typename out_t, int P, int KW, int S, int64_t IS, int64_t WS,
          bool PT>
inline void slide_block(const in_t* in, int64_t istep, int64_t khstride, int64_t KH,
                        const acc_t* w, int64_t wstride, const acc_t* bias, out_t* out,
                        int64_t ostep, int64_t cnt) {
  using AV = Vec<acc_t>;
  // compile-time strides where the caller knows them: fewer address registers
  const int64_t is = IS ? IS : istep;
  const int64_t ws = WS ? WS : wstride;
  AV acc[P];
  const AV bv = AV::loadu(bias);
  static_for<P>([&](auto p) { acc[p] = bv; });
  for (int64_t kh = 0; kh < KH; ++kh) {
    const in_t* r = in + kh * khstride;
    const acc_t* wk = w + kh * KW * ws;
    AV wv[KW];
    static_for<KW>([&](auto k) { wv[k] = AV::loadu(wk + k * ws); });
    static_for<(P - 1) * S + KW>([&](auto j) {
      AV x;
      if constexpr (PT) {
        x = IO<in_t, acc_t>::load_partial(r + j * is, cnt);
      } else {
        x = IO<in_t, acc_t>::load(r + j * is);
      }
      static_for<KW>([&](auto k) {
        constexpr int d = static_cast<int>(j) - static_cast<int>(k);
        if constexpr (d >= 0 && d % S == 0 && d / S < P) {
          acc[d / S] = vfmadd(x, wv[k], acc[d / S]);
        }
      });
    });
  }
  static_for<P>([&](auto p) {
    if constexpr (PT) {
      IO<out_t, acc_t>::store_partial(out + p * ostep, acc[p], cnt);
    } else {
      IO<out_t, acc_t>::store(out + p * ostep, acc[p]);
    }
  });
}

// One block of exactly n (1 <= n <= Q) pixels.
template <typename in_t, typename acc_t, typename out_t, int Q, int KW, int S, int64_t IS, int64_t WS,
          bool PT>
inline void slide_any(const in_t* in, int64_t istep, int64_t khstride, int64_t KH,
                      const acc_t* w, int64_t wstride, const acc_t* bias, out_t* out,
                      int64_t ostep, int64_t n, int64_t cnt) {
  if (n == Q) {
    slide_block<in_t, acc_t, out_t, Q, KW, S, IS, WS, PT>(in, istep, khstride, KH, w, wstride, bias,
                                                         out, ostep, cnt);
  } else if constexpr (Q > 1) {
    slide_any<in_t, acc_t, out_t, Q - 1, KW, S, IS, WS, PT>(in, istep, khstride, KH, w, wstride,
                                                           bias, out, ostep, n, cnt);
  }
}

// One output row segment of n pixels; `in`: input pixel of tap (0, 0) of the first
// output pixel (input pixel stride istep, kernel-row stride khstride); weights
// [kh][kw] with stride wstride per tap. The row is split into the fewest blocks of
// at most P pixels, of (nearly) equal sizes (14 -> 7 + 7, not 12 + 2). P = 12 where
// a vector is 512 bits (32 registers: 12 accumulators + KW weights fit), else 8.
template <typename in_t, typename acc_t, typename out_t, int KW, int S, int64_t IS, int64_t WS,
          bool PT>
void slide_row(const in_t* in, int64_t istep, int64_t khstride, int64_t KH, const acc_t* w,
               int64_t wstride, const acc_t* bias, out_t* out, int64_t ostep, int64_t n,
               int64_t cnt) {
  constexpr int P = Vec<acc_t>::size() * sizeof(acc_t) >= 64 ? 12 : 8;
  if (n <= 0) return;
  if (IS) istep = IS;
  const int64_t nb = div_ceil(n, P);
  const int64_t q = div_ceil(n, nb);
  const int64_t nbig = n - nb * (q - 1);  // blocks of q pixels, then blocks of q - 1
  int64_t p = 0;
  for (int64_t bi = 0; bi < nb; ++bi) {
    const int64_t sz = bi < nbig ? q : q - 1;
    if (sz == P) {
      slide_block<in_t, acc_t, out_t, P, KW, S, IS, WS, PT>(in + p * S * istep, istep, khstride, KH,
                                                           w, wstride, bias, out + p * ostep, ostep,
                                                           cnt);
    } else {
      slide_any<in_t, acc_t, out_t, P - 1, KW, S, IS, WS, PT>(in + p * S * istep, istep, khstride,
                                                             KH, w, wstride, bias, out + p * ostep,
                                                             ostep, sz, cnt);
    }
    p += sz;
  }
}

template <typename in_t, typename acc_t, typename out_t>
using slide_row_fn = void (*)(const in_t*, int64_t, int64_t, int64_t, const acc_t*, int64_t,
                              const acc_t*, out_t*, int64_t, int64_t, int64_t);

// The specialisation for (KW, SW), or nullptr (DW != 1 or another shape).
// IS / WS: the input pixel / weight tap strides when known at compile time, else 0.
// PT: the partial-vector variant (last argument: channels per pixel, < L).
template <typename in_t, typename acc_t, typename out_t, int64_t IS, int64_t WS, bool PT = false>
slide_row_fn<in_t, acc_t, out_t> pick_slide_row(const Geo& g) {
  if (g.DW != 1) return nullptr;
#define DWCONV_SLIDE(kw, s) \
  if (g.KW == kw && g.SW == s) return &slide_row<in_t, acc_t, out_t, kw, s, IS, WS, PT>;
  DWCONV_SLIDE(3, 1) DWCONV_SLIDE(5, 1) DWCONV_SLIDE(7, 1)
  DWCONV_SLIDE(3, 2) DWCONV_SLIDE(5, 2) DWCONV_SLIDE(7, 2)
#undef DWCONV_SLIDE
  return nullptr;
}

// In-register transpose of an L x L block (L = Vec<T>::size(), a power of two):
// log2(L) rounds of perfect shuffles (interleave2 of rows i and i + L/2).
template <typename T>
inline void transpose_square(Vec<T>* v) {
  constexpr int n = Vec<T>::size();
  Vec<T> t[n];
  for (int r = n; r > 1; r /= 2) {
    for (int i = 0; i < n / 2; ++i) {
      auto pr = vinterleave2(v[i], v[i + n / 2]);
      t[2 * i] = std::get<0>(pr);
      t[2 * i + 1] = std::get<1>(pr);
    }
    for (int i = 0; i < n; ++i) v[i] = t[i];
  }
}

#ifndef DWCONV_NEON_VEC128
#define DWCONV_NEON_VEC128 1  // torch >= 2.6: Vectorized<float> is one float32x4_t
#endif
#if defined(__aarch64__) && !defined(CPU_CAPABILITY_SVE) && !defined(CPU_CAPABILITY_SVE256) && \
    !defined(C10_MOBILE) && DWCONV_NEON_VEC128
// NEON (Vectorized<float> = float32x4_t, Vectorized<Half> = float16x8_t): torch's
// interleave2 has no NEON version and goes lane by lane through scalar registers
// (~50 instructions per 4 x 4 float block, measured under qemu); TRN1/TRN2 rounds on
// 16-, 32- and 64-bit lanes transpose in registers: 8 instructions (float 4 x 4),
// 24 (half 8 x 8).
template <>
inline void transpose_square<float>(Vec<float>* v) {
  static_assert(Vec<float>::size() == 4, "NEON float vector");
  uint32x4_t r[4];
  for (int i = 0; i < 4; ++i) r[i] = vreinterpretq_u32_f32(static_cast<float32x4_t>(v[i]));
  const uint64x2_t t0 = vreinterpretq_u64_u32(vtrn1q_u32(r[0], r[1]));
  const uint64x2_t t1 = vreinterpretq_u64_u32(vtrn2q_u32(r[0], r[1]));
  const uint64x2_t t2 = vreinterpretq_u64_u32(vtrn1q_u32(r[2], r[3]));
  const uint64x2_t t3 = vreinterpretq_u64_u32(vtrn2q_u32(r[2], r[3]));
  v[0] = Vec<float>(vreinterpretq_f32_u64(vtrn1q_u64(t0, t2)));
  v[1] = Vec<float>(vreinterpretq_f32_u64(vtrn1q_u64(t1, t3)));
  v[2] = Vec<float>(vreinterpretq_f32_u64(vtrn2q_u64(t0, t2)));
  v[3] = Vec<float>(vreinterpretq_f32_u64(vtrn2q_u64(t1, t3)));
}

#if DWCONV_KERNEL_BODY == 1  // pass 2's HalfVec transposes with ZIP1/ZIP2 (vinterleave2)
template <>
inline void transpose_square<c10::Half>(Vec<c10::Half>* v) {
  static_assert(Vec<c10::Half>::size() == 8, "NEON half vector");
  uint16x8_t r[8];
  for (int i = 0; i < 8; ++i) r[i] = vreinterpretq_u16_f16(static_cast<float16x8_t>(v[i]));
  uint32x4_t a[4], b[4];  // 16-bit round: rows (2k, 2k + 1)
  for (int k = 0; k < 4; ++k) {
    a[k] = vreinterpretq_u32_u16(vtrn1q_u16(r[2 * k], r[2 * k + 1]));
    b[k] = vreinterpretq_u32_u16(vtrn2q_u16(r[2 * k], r[2 * k + 1]));
  }
  uint64x2_t s[8];  // 32-bit round: s[q] holds columns q and q + 4 of 4 rows
  for (int h = 0; h < 2; ++h) {
    s[4 * h + 0] = vreinterpretq_u64_u32(vtrn1q_u32(a[2 * h], a[2 * h + 1]));
    s[4 * h + 2] = vreinterpretq_u64_u32(vtrn2q_u32(a[2 * h], a[2 * h + 1]));
    s[4 * h + 1] = vreinterpretq_u64_u32(vtrn1q_u32(b[2 * h], b[2 * h + 1]));
    s[4 * h + 3] = vreinterpretq_u64_u32(vtrn2q_u32(b[2 * h], b[2 * h + 1]));
  }
  for (int q = 0; q < 4; ++q) {  // 64-bit round: rows 0-3 with rows 4-7
    v[q] = Vec<c10::Half>(vreinterpretq_f16_u64(vtrn1q_u64(s[q], s[q + 4])));
    v[q + 4] = Vec<c10::Half>(vreinterpretq_f16_u64(vtrn2q_u64(s[q], s[q + 4])));
  }
}
#endif  // DWCONV_KERNEL_BODY == 1
#endif

// ---------------------------------------------------------------------------
// Forward, tile engine (the default; NCHW and channels_last alike).
// Per (image, block of L channels) and band of output rows, the input rows the
// band needs are brought into a zero-padded channels-last tile [rows][Wp][L]
// (acc_t): NCHW planes through in-register L x L transposes, channels-last
// inputs by plain vector copies, anything else element-wise. The band is then
// computed with channel vectors, 8 output pixels at a time (one weight vector
// load per 8 FMAs, no padding waste, no border branches, pixel blocks run across
// rows so small maps keep 8 accumulators busy), and written back the same way.
// The band is sized so the tile stays cache-resident.
// ---------------------------------------------------------------------------
struct TileLayout {
  int64_t Wp;      // padded width
  int64_t RB;      // output rows per band
  int64_t TR;      // tile rows per band
  int64_t nbands;
};

template <typename acc_t>
TileLayout tile_layout(const Geo& g, int64_t budget_bytes) {
  constexpr int64_t L = Vec<acc_t>::size();
  TileLayout t;
  t.Wp = g.W + 2 * g.PW;
  const int64_t row_bytes = t.Wp * L * static_cast<int64_t>(sizeof(acc_t));
  const int64_t out_row_bytes = g.OW * L * static_cast<int64_t>(sizeof(acc_t));
  const int64_t span = g.DH * (g.KH - 1) + 1;
  // (RB - 1) * SH + span tile rows + RB output rows within the budget
  int64_t rb = (budget_bytes - (span - g.SH) * row_bytes) / (g.SH * row_bytes + out_row_bytes);
  t.RB = std::max<int64_t>(1, std::min<int64_t>(g.OH, rb));
  t.nbands = div_ceil(g.OH, t.RB);
  t.RB = div_ceil(g.OH, t.nbands);  // even bands
  t.TR = (t.RB - 1) * g.SH + span;
  return t;
}

template <typename scalar_t>
void forward_tiles(const Geo& g, const Tensor& output, const Tensor& input,
                   const Tensor& weight, const Tensor& bias) {
  using acc_t = acc_of<scalar_t>;
  using AV = Vec<acc_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = AV::size();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const int64_t bs = bias.defined() ? bias.stride(0) : 0;
  const int64_t iN = input.stride(0), iC = input.stride(1), iH = input.stride(2), iW = input.stride(3);
  const int64_t oN = output.stride(0), oC = output.stride(1), oH = output.stride(2), oW = output.stride(3);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const int64_t w0 = weight.stride(0), w2 = weight.stride(2), w3 = weight.stride(3);
  const int64_t K = g.K();
  const TileLayout tl = tile_layout<acc_t>(g, 96 * 1024);
  const int64_t Wp = tl.Wp;
  const int64_t nblk = div_ceil(g.C, L);
  // Input side: channels-last (one vector per pixel), NCHW planes (transposes), other.
  const bool in_cl = iC == 1 && g.C > 1;
  const bool in_planar = !in_cl && iW == 1 && iH == g.W;
  const bool out_cl = oC == 1 && g.C * g.M > 1 && g.M == 1;
  const bool out_planar = !out_cl && oW == 1 && oH == g.OW;

  std::vector<int64_t> toff(K);
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      toff[kh * g.KW + kw] = (kh * g.DH * Wp + kw * g.DW) * L;
  // Tile offsets (relative to padded row 0) of every input pixel and of tap (0, 0)
  // of every output pixel; a band subtracts its first row.
  std::vector<int64_t> pix_off(g.H * g.W), obase(g.OH * g.OW);
  for (int64_t ih = 0; ih < g.H; ++ih)
    for (int64_t iw = 0; iw < g.W; ++iw)
      pix_off[ih * g.W + iw] = ((ih + g.PH) * Wp + iw + g.PW) * L;
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow)
      obase[oh * g.OW + ow] = (oh * g.SH * Wp + ow * g.SW) * L;
  const int64_t work = std::max<int64_t>(1, g.OH * g.OW * K * g.M * L);
  const int64_t grain = std::max<int64_t>(1, 65536 / work);
  const auto slide = pick_slide_row<acc_t, acc_t, acc_t, L, L>(g);

  // Weights [block][j][tap][L] and bias [block][j][L] of every channel block, once
  // (not once per image and block).
  std::vector<acc_t> wall(nblk * g.M * K * L), ball(nblk * g.M * L);
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t c0 = blk * L, cw = std::min<int64_t>(L, g.C - c0);
    acc_t* wt = wall.data() + blk * g.M * K * L;
    acc_t* bv = ball.data() + blk * g.M * L;
    for (int64_t j = 0; j < g.M; ++j) {
      for (int64_t c = 0; c < L; ++c) {
        const int64_t oc = (c0 + c) * g.M + j;
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw)
            wt[(j * K + kh * g.KW + kw) * L + c] =
                c < cw ? static_cast<acc_t>(w[oc * w0 + kh * w2 + kw * w3]) : acc_t(0);
        bv[j * L + c] = (b && c < cw) ? static_cast<acc_t>(b[oc * bs]) : acc_t(0);
      }
    }
  }

  at::parallel_for(0, g.N * nblk, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> tile(tl.TR * Wp * L + L, acc_t(0));  // column pads stay zero
    std::vector<acc_t> tout(tl.RB * g.OW * L);
    std::vector<const acc_t*> bases(tl.RB * g.OW);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nblk, c0 = (task % nblk) * L;
      const int64_t cw = std::min<int64_t>(L, g.C - c0);
      const acc_t* wtd = wall.data() + (task % nblk) * g.M * K * L;
      const acc_t* bvd = ball.data() + (task % nblk) * g.M * L;
      const scalar_t* src = in + n * iN + c0 * iC;
      for (int64_t band = 0; band < tl.nbands; ++band) {
        const int64_t oh0 = band * tl.RB;
        const int64_t rows = std::min<int64_t>(tl.RB, g.OH - oh0);
        if (rows <= 0) break;
        const int64_t R0 = oh0 * g.SH;                       // padded row of tile row 0
        const int64_t tr = (rows - 1) * g.SH + g.DH * (g.KH - 1) + 1;  // tile rows used
        const int64_t ih_lo = std::max<int64_t>(0, R0 - g.PH);
        const int64_t ih_hi = std::min<int64_t>(g.H, R0 + tr - g.PH);
        // vertical padding rows of this band
        for (int64_t r = 0; r < tr; ++r) {
          const int64_t ih = R0 + r - g.PH;
          if (ih < 0 || ih >= g.H)
            std::fill(tile.data() + r * Wp * L, tile.data() + (r + 1) * Wp * L, acc_t(0));
        }
        acc_t* const tb = tile.data() - R0 * Wp * L;  // + pix_off[p] = pixel p's vector
        if (ih_hi > ih_lo) {
          auto dst_of = [&](int64_t ih, int64_t iw) { return tb + pix_off[ih * g.W + iw]; };
          if (in_cl) {
            for (int64_t ih = ih_lo; ih < ih_hi; ++ih) {
              const scalar_t* srow = src + ih * iH;
              acc_t* d = dst_of(ih, 0);
              if (cw == L) {
                for (int64_t iw = 0; iw < g.W; ++iw) io::load(srow + iw * iW).store(d + iw * L);
              } else {
                for (int64_t iw = 0; iw < g.W; ++iw)
                  io::load_partial(srow + iw * iW, cw).store(d + iw * L);
              }
            }
          } else if (in_planar) {
            // pixels [ih_lo * W, ih_hi * W) of each plane, L at a time
            const int64_t p_lo = ih_lo * g.W, p_hi = ih_hi * g.W;
            int64_t p0 = p_lo;
            for (; p0 + L <= p_hi; p0 += L) {
              AV v[L];
              for (int64_t c = 0; c < L; ++c) v[c] = c < cw ? io::load(src + c * iC + p0) : AV(acc_t(0));
              transpose_square<acc_t>(v);
              for (int64_t q = 0; q < L; ++q) v[q].store(tb + pix_off[p0 + q]);
            }
            for (int64_t p = p0; p < p_hi; ++p) {
              acc_t* d = tb + pix_off[p];
              for (int64_t c = 0; c < L; ++c)
                d[c] = c < cw ? static_cast<acc_t>(src[c * iC + p]) : acc_t(0);
            }
          } else {
            for (int64_t ih = ih_lo; ih < ih_hi; ++ih)
              for (int64_t iw = 0; iw < g.W; ++iw) {
                acc_t* d = dst_of(ih, iw);
                for (int64_t c = 0; c < L; ++c)
                  d[c] = c < cw ? static_cast<acc_t>(src[c * iC + ih * iH + iw * iW]) : acc_t(0);
              }
          }
        }
        const int64_t nq = rows * g.OW;
        const int64_t* ob = obase.data() + oh0 * g.OW;
        if (!slide)
          for (int64_t q = 0; q < nq; ++q) bases[q] = tb + ob[q];
        for (int64_t j = 0; j < g.M; ++j) {
          if (slide) {
            for (int64_t r = 0; r < rows; ++r)
              slide(tile.data() + r * g.SH * Wp * L, L, g.DH * Wp * L, g.KH, wtd + j * K * L,
                    L, bvd + j * L, tout.data() + r * g.OW * L, L, g.OW, L);
          } else {
            px_run<acc_t, acc_t, acc_t, 1>(bases.data(), nq, toff.data(), K,
                                           wtd + j * K * L, L, bvd + j * L,
                                           tout.data(), L);
          }
          // lane c -> output channel (c0 + c) * M + j; pixels [oh0 * OW, oh0 * OW + nq)
          scalar_t* dst = out + n * oN + (c0 * g.M + j) * oC;
          const int64_t lane_stride = g.M * oC;
          const int64_t q_lo = oh0 * g.OW;
          if (out_cl) {
            for (int64_t r = 0; r < rows; ++r) {
              scalar_t* drow = dst + (oh0 + r) * oH;
              const acc_t* srow = tout.data() + r * g.OW * L;
              if (cw == L) {
                for (int64_t ow = 0; ow < g.OW; ++ow) io::store(drow + ow * oW, AV::loadu(srow + ow * L));
              } else {
                for (int64_t ow = 0; ow < g.OW; ++ow)
                  io::store_partial(drow + ow * oW, AV::loadu(srow + ow * L), cw);
              }
            }
          } else if (out_planar) {
            int64_t q0 = 0;
            for (; q0 + L <= nq; q0 += L) {
              AV u[L];
              for (int64_t q = 0; q < L; ++q) u[q] = AV::loadu(tout.data() + (q0 + q) * L);
              transpose_square<acc_t>(u);
              for (int64_t c = 0; c < cw; ++c) io::store(dst + c * lane_stride + q_lo + q0, u[c]);
            }
            for (int64_t q = q0; q < nq; ++q)
              for (int64_t c = 0; c < cw; ++c)
                dst[c * lane_stride + q_lo + q] = static_cast<scalar_t>(tout[q * L + c]);
          } else {
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t ow = 0; ow < g.OW; ++ow)
                for (int64_t c = 0; c < cw; ++c)
                  dst[c * lane_stride + (oh0 + r) * oH + ow * oW] =
                      static_cast<scalar_t>(tout[(r * g.OW + ow) * L + c]);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Forward, channels-last direct engine (input and output unit-stride in C,
// multiplier 1, maps large enough that most outputs see every tap): reads the
// input in place. Output pixels whose taps all fall inside the image are computed
// in pixel blocks (px_run: one weight vector load per block, 8 accumulators);
// the few border pixels of each row take a bounds-checked per-pixel path.
// ---------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
inline void cl_pixel_checked(const scalar_t* in_row0, int64_t iH, int64_t iW, int64_t kh_lo,
                             int64_t kh_hi, int64_t kw_lo, int64_t kw_hi, const Geo& g,
                             const acc_t* wt, int64_t wstride, const acc_t* bias_blk,
                             scalar_t* op, int64_t nvec, int64_t tail) {
  using AV = Vec<acc_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = AV::size();
  if (nvec == 2 && tail == 0) {  // a full block of the direct engine: registers only
    AV a0 = AV::loadu(bias_blk), a1 = AV::loadu(bias_blk + L);
    for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
      for (int64_t kw = kw_lo; kw < kw_hi; ++kw) {
        const scalar_t* ip = in_row0 + kh * g.DH * iH + kw * g.DW * iW;
        const acc_t* wp = wt + (kh * g.KW + kw) * wstride;
        a0 = vfmadd(io::load(ip), AV::loadu(wp), a0);
        a1 = vfmadd(io::load(ip + L), AV::loadu(wp + L), a1);
      }
    }
    io::store(op, a0);
    io::store(op + L, a1);
    return;
  }
  AV acc[4];
  for (int64_t u = 0; u <= nvec && u < 4; ++u) acc[u] = AV::loadu(bias_blk + u * L);
  for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
    for (int64_t kw = kw_lo; kw < kw_hi; ++kw) {
      const scalar_t* ip = in_row0 + kh * g.DH * iH + kw * g.DW * iW;
      const acc_t* wp = wt + (kh * g.KW + kw) * wstride;
      for (int64_t u = 0; u < nvec; ++u)
        acc[u] = vfmadd(io::load(ip + u * L), AV::loadu(wp + u * L), acc[u]);
      if (tail)
        acc[nvec] = vfmadd(io::load_partial(ip + nvec * L, tail),
                           AV::loadu(wp + nvec * L), acc[nvec]);
    }
  }
  for (int64_t u = 0; u < nvec; ++u) io::store(op + u * L, acc[u]);
  if (tail) io::store_partial(op + nvec * L, acc[nvec], tail);
}

// ---------------------------------------------------------------------------
// 3x3, dilation 1, stride 1 or 2, channels-last, fp32 and fp16 with fp16
// arithmetic: column sweeps (NEON builds).
// R output rows x one channel vector, swept along the row one input column at a
// time: each input column's vectors are loaded once and feed every output column
// that reads them (stride 1: kw = 0, 1, 2 of three output columns; stride 2: the
// even columns kw 0 of one output column and kw 2 of the previous one, the odd
// columns kw 1); the accumulators rotate over three (stride 1) or two (stride 2)
// register sets, unrolled so no set is copied; the 9 weight vectors stay in
// registers for the whole row: 9 FMAs per output vector, (R + 2) / R (stride 1) or
// 2 (2R + 1) / R (stride 2) loads, no per-tap address arithmetic (px_block: one
// load per FMA). Needs 3R + 11 / 2R + 11 vector registers, so it is enabled where
// there are 32 (NEON) and Vectorized<float> is one register; x86 keeps px_run.
// Rows outside the image read a zero row; at stride 1 with PW == 1 the pad
// columns are steps without input, otherwise the border columns are computed
// bounds-checked. Per output the taps are summed column by column (kw outer).
// ---------------------------------------------------------------------------
#if defined(__aarch64__) && !defined(CPU_CAPABILITY_SVE) && !defined(CPU_CAPABILITY_SVE256) && \
    DWCONV_NEON_VEC128
#define DWCONV_SWEEP3 1
#else
#define DWCONV_SWEEP3 0
#endif

#ifndef DWCONV_AINL
#if defined(__GNUC__) || defined(__clang__)
#define DWCONV_AINL __attribute__((always_inline))
#else
#define DWCONV_AINL
#endif
#endif
// static_for whose steps are always inlined (the sweep's register sets must not go
// through memory).
template <typename F, std::size_t... I>
DWCONV_AINL inline void static_for_ai_impl(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<int, static_cast<int>(I)>{}), ...);
}
template <int N, typename F>
DWCONV_AINL inline void static_for_ai(F&& f) {
  static_for_ai_impl(std::forward<F>(f), std::make_index_sequence<N>{});
}

// GCC's first scheduling pass hoists loads ahead of the FMAs that use them, past
// what 32 registers hold: the K x K sweep then spills (5x5: 83 stores per 20 output
// vectors instead of 20) and the 3x3 stride-1 one copies accumulators (12 moves per
// 48 outputs instead of 8). Those two are compiled on their source order (the
// stride-2 sweep is better with the pass: 139 instead of 147 per 32 outputs).
#if defined(__GNUC__) && !defined(__clang__)
#define DWCONV_SOURCE_ORDER_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC optimize(\"no-schedule-insns\")")
#define DWCONV_SOURCE_ORDER_END _Pragma("GCC pop_options")
#else
#define DWCONV_SOURCE_ORDER_BEGIN
#define DWCONV_SOURCE_ORDER_END
#endif

// The first tap multiplies (FMUL) and the bias is added at the store: NEON's FMLA
// overwrites its addend, so starting from the bias would copy it into every new
// accumulator, and those copies also keep GCC from keeping each register set in place.
template <bool HB, typename V>
DWCONV_AINL inline V with_bias(const V& acc, const V& bv) {
  if constexpr (HB) return acc + bv;
  else return acc;
}

DWCONV_SOURCE_ORDER_BEGIN
// Stride 1. ipp[i]: input row i of the band (R + 2 rows) at the sweep's first input
// column (zero_edges: one column before it, the pad), opp[r]: output row r at its
// first column; n output columns.
template <typename T, int R, bool HB>
inline void sweep3_rows(const T* const* ipp, T* const* opp, int64_t iW, int64_t oW,
                        const T* w, const T* bias, int64_t n, bool zero_edges) {
  using AV = Vec<T>;
  // local copies: the vector stores may alias the caller's pointer arrays
  const T* ip[R + 2];
  T* op[R];
  static_for_ai<R + 2>([&](auto i) DWCONV_AINL { ip[i] = ipp[i]; });
  static_for_ai<R>([&](auto r) DWCONV_AINL { op[r] = opp[r]; });
  AV wv[9];
  static_for_ai<9>([&](auto k) DWCONV_AINL { wv[k] = AV::loadu(w + k * AV::size()); });
  const AV bv = HB ? AV::loadu(bias) : AV(T(0));
  AV s0[R], s1[R], s2[R];
  const int64_t toff = zero_edges ? 1 : 0;  // step t reads input column t - toff
  // Step t: input column t feeds new column t (N, kw 0), t - 1 (M, kw 1), t - 2 (O, kw 2; stored).
  auto step = [&](auto hn, auto hm, auto ho, auto hi, AV* N, AV* M, AV* O, int64_t t) DWCONV_AINL {
    constexpr bool HN = decltype(hn)::value, HM = decltype(hm)::value;
    constexpr bool HO = decltype(ho)::value, HI = decltype(hi)::value;
    if constexpr (HI) {
      const int64_t xo = (t - toff) * iW;
      static_for_ai<R + 2>([&](auto i) DWCONV_AINL {
        const AV x = AV::loadu(ip[i] + xo);
        static_for_ai<3>([&](auto kh) DWCONV_AINL {
          constexpr int r = static_cast<int>(i) - static_cast<int>(kh);
          if constexpr (r >= 0 && r < R) {
            if constexpr (HN && kh == 0) N[r] = x * wv[0];
            if constexpr (HN && kh != 0) N[r] = vfmadd(x, wv[kh * 3], N[r]);
            if constexpr (HM) M[r] = vfmadd(x, wv[kh * 3 + 1], M[r]);
            if constexpr (HO) O[r] = vfmadd(x, wv[kh * 3 + 2], O[r]);
          }
        });
      });
    } else if constexpr (HN) {
      static_for_ai<R>([&](auto r) DWCONV_AINL { N[r] = AV(T(0)); });
    }
    if constexpr (HO) static_for_ai<R>([&](auto r) DWCONV_AINL { with_bias<HB>(O[r], bv).store(op[r] + (t - 2) * oW); });
  };
  using T1 = std::true_type;
  using F0 = std::false_type;
  // column c lives in set c % 3
  auto at_phase = [&](auto hn, auto hm, auto ho, auto hi, int64_t t) DWCONV_AINL {
    switch (t % 3) {
      case 0: step(hn, hm, ho, hi, s0, s2, s1, t); break;
      case 1: step(hn, hm, ho, hi, s1, s0, s2, t); break;
      default: step(hn, hm, ho, hi, s2, s1, s0, t); break;
    }
  };
  if (zero_edges) step(T1{}, F0{}, F0{}, F0{}, s0, s2, s1, 0);
  else step(T1{}, F0{}, F0{}, T1{}, s0, s2, s1, 0);
  step(T1{}, T1{}, F0{}, T1{}, s1, s0, s2, 1);
  int64_t t = 2;
  for (; t + 3 <= n; t += 3) {
    step(T1{}, T1{}, T1{}, T1{}, s2, s1, s0, t);
    step(T1{}, T1{}, T1{}, T1{}, s0, s2, s1, t + 1);
    step(T1{}, T1{}, T1{}, T1{}, s1, s0, s2, t + 2);
  }
  for (; t < n; ++t) at_phase(T1{}, T1{}, T1{}, T1{}, t);
  at_phase(F0{}, T1{}, T1{}, T1{}, n);
  if (zero_edges) at_phase(F0{}, F0{}, T1{}, F0{}, n + 1);
  else at_phase(F0{}, F0{}, T1{}, T1{}, n + 1);
}

DWCONV_SOURCE_ORDER_END

// Stride 2. ipp[i]: input row i of the band (2R + 1 rows) at the first output
// column's tap kw = 0 (all n output columns are interior), opp[r] as above.
template <typename T, int R, bool HB>
inline void sweep3s2_rows(const T* const* ipp, T* const* opp, int64_t iW, int64_t oW,
                          const T* w, const T* bias, int64_t n) {
  using AV = Vec<T>;
  constexpr int RI = 2 * R + 1;
  const T* ip[RI];
  T* op[R];
  static_for_ai<RI>([&](auto i) DWCONV_AINL { ip[i] = ipp[i]; });
  static_for_ai<R>([&](auto r) DWCONV_AINL { op[r] = opp[r]; });
  AV wv[9];
  static_for_ai<9>([&](auto k) DWCONV_AINL { wv[k] = AV::loadu(w + k * AV::size()); });
  const AV bv = HB ? AV::loadu(bias) : AV(T(0));
  AV sa[R], sb[R];
  // Input column 2c: kw 0 of output column c (C, new), kw 2 of c - 1 (P, stored);
  // input column 2c + 1: kw 1 of c. Output row r reads band rows 2r + kh.
  auto column = [&](auto hc, auto hp, AV* C, AV* P, int64_t c) DWCONV_AINL {
    constexpr bool HC = decltype(hc)::value, HP = decltype(hp)::value;
    const int64_t xo = 2 * c * iW;
    static_for_ai<RI>([&](auto i) DWCONV_AINL {
      const AV x = AV::loadu(ip[i] + xo);
      static_for_ai<3>([&](auto kh) DWCONV_AINL {
        constexpr int d = static_cast<int>(i) - static_cast<int>(kh);
        if constexpr (d >= 0 && d % 2 == 0 && d / 2 < R) {
          constexpr int r = d / 2;
          if constexpr (HC && kh == 0) C[r] = x * wv[0];
          if constexpr (HC && kh != 0) C[r] = vfmadd(x, wv[kh * 3], C[r]);
          if constexpr (HP) P[r] = vfmadd(x, wv[kh * 3 + 2], P[r]);
        }
      });
    });
    if constexpr (HP) static_for_ai<R>([&](auto r) DWCONV_AINL { with_bias<HB>(P[r], bv).store(op[r] + (c - 1) * oW); });
    if constexpr (HC) {
      static_for_ai<RI>([&](auto i) DWCONV_AINL {
        const AV x = AV::loadu(ip[i] + xo + iW);
        static_for_ai<3>([&](auto kh) DWCONV_AINL {
          constexpr int d = static_cast<int>(i) - static_cast<int>(kh);
          if constexpr (d >= 0 && d % 2 == 0 && d / 2 < R) C[d / 2] = vfmadd(x, wv[kh * 3 + 1], C[d / 2]);
        });
      });
    }
  };
  using T1 = std::true_type;
  using F0 = std::false_type;
  column(T1{}, F0{}, sa, sb, 0);  // column c lives in set c % 2
  int64_t c = 1;
  for (; c + 2 <= n; c += 2) {
    column(T1{}, T1{}, sb, sa, c);
    column(T1{}, T1{}, sa, sb, c + 1);
  }
  if (c < n) {
    column(T1{}, T1{}, sb, sa, c);
    column(F0{}, T1{}, sa, sb, n);
  } else {
    column(F0{}, T1{}, sb, sa, n);
  }
}

DWCONV_SOURCE_ORDER_BEGIN
// K x K (K = 5, 7), stride 1. Unlike the 3x3 sweeps the K^2 weight vectors do not
// fit in registers: the K output columns in flight stay there instead (K sets of R
// accumulators) with the R + K - 1 input vectors of the current column, and each
// weight vector is loaded once per column and used for R FMAs. Per output vector:
// K^2 FMAs + K^2 / R weight loads + (R + K - 1) / R input loads (px_block: one
// load per FMA). Step t reads padded input column t (input column t - PW; a pad
// column is a step without input) and feeds output columns t - kw, kw < K;
// column t - K + 1 is complete after it. ipp[i]: band row i at input column 0.
template <typename T, int K, int R, bool HB>
inline void sweepk_rows(const T* const* ipp, T* const* opp, int64_t iW, int64_t oW,
                        const T* w, const T* bias, int64_t n, int64_t PW, int64_t W) {
  using AV = Vec<T>;
  constexpr int64_t L = AV::size();
  constexpr int RI = R + K - 1;
  const T* ip[RI];
  T* op[R];
  static_for_ai<RI>([&](auto i) DWCONV_AINL { ip[i] = ipp[i]; });
  static_for_ai<R>([&](auto r) DWCONV_AINL { op[r] = opp[r]; });
  const AV bv = HB ? AV::loadu(bias) : AV(T(0));
  AV acc[K][R];  // column c lives in set c % K
  // P = t % K (compile time); FULL: every tap of every column in flight is valid.
  auto step = [&](auto pc, auto fc, int64_t t) DWCONV_AINL {
    constexpr int P = decltype(pc)::value;
    constexpr bool FULL = decltype(fc)::value;
    const int64_t ic = t - PW;
    const bool has_input = FULL || (ic >= 0 && ic < W);
    if (!FULL && t < n) static_for_ai<R>([&](auto r) DWCONV_AINL { acc[P][r] = AV(T(0)); });
    if (has_input) {
      AV x[RI];  // loaded when first needed: R of them live at a time
      static_for_ai<R - 1>([&](auto i) DWCONV_AINL { x[i] = AV::loadu(ip[i] + ic * iW); });
      static_for_ai<K>([&](auto kh) DWCONV_AINL {
        x[kh + R - 1] = AV::loadu(ip[kh + R - 1] + ic * iW);
        static_for_ai<K>([&](auto kw) DWCONV_AINL {
          constexpr int set = (P - static_cast<int>(kw) + K) % K;
          if (FULL || (t - kw >= 0 && t - kw < n)) {
            const AV wv = AV::loadu(w + (kh * K + kw) * L);
            static_for_ai<R>([&](auto r) DWCONV_AINL {
              if constexpr (FULL && kh == 0 && kw == 0) acc[set][r] = x[r] * wv;
              else acc[set][r] = vfmadd(x[r + kh], wv, acc[set][r]);
            });
          }
        });
      });
    }
    constexpr int done = (P + 1) % K;  // set of column t - K + 1
    if (FULL || (t - (K - 1) >= 0 && t - (K - 1) < n))
      static_for_ai<R>([&](auto r) DWCONV_AINL {
        with_bias<HB>(acc[done][r], bv).store(op[r] + (t - (K - 1)) * oW);
      });
  };
  auto any_step = [&](int64_t t) DWCONV_AINL {
    static_for_ai<K>([&](auto p) DWCONV_AINL {
      if (t % K == p) step(p, std::false_type{}, t);
    });
  };
  int64_t t = 0;
  for (; t < std::min<int64_t>(K - 1, n); ++t) any_step(t);
  if (t == K - 1) {
    // K - 1 is phase K - 1; one unrolled round of K steps starts there
    for (; t + K <= n; t += K) {
      step(std::integral_constant<int, K - 1>{}, std::true_type{}, t);
      static_for_ai<K - 1>([&](auto p) DWCONV_AINL {
        step(p, std::true_type{}, t + 1 + p);
      });
    }
  }
  for (; t < n + K - 1; ++t) any_step(t);
}

DWCONV_SOURCE_ORDER_END

// Output rows per band of the K x K sweep: K sets of R accumulators + R inputs + a
// weight + the bias in 32 registers (5x5: 4, 7x7: 3; 7x7 with 2 rows executes 15% more).
constexpr int sweepk_rows_per_band(int64_t K) { return K == 5 ? 4 : 3; }

// Whether forward_cl_sweep takes this conv (after use_cl_direct_engine).
template <typename T>
inline bool use_cl_sweep(const Geo& g) {
  if (!(g.KH == g.KW && g.DH == 1 && g.DW == 1 && g.SH == g.SW)) return false;
  if ((g.KW == 5 || g.KW == 7) && g.SW == 1) {  // whole rows, pads included
    return g.C % Vec<T>::size() == 0 && g.OH >= sweepk_rows_per_band(g.KW) &&
           g.PW < g.KW && g.PH < g.KW;
  }
  if (!(g.KW == 3 && (g.SW == 1 || g.SW == 2))) return false;
  if (g.C % Vec<T>::size() != 0 || g.OH < 2 || g.PW > 2 || g.PH > 2) return false;
  if (g.SW == 2) {  // interior output columns [ceil(PW / 2), floor((W + PW - 3) / 2] + 1)
    return (g.W + g.PW - 3) / 2 + 1 - (g.PW + 1) / 2 >= 2;
  }
  const int64_t ow_a = g.PW, ow_b = g.W + g.PW - 2;  // interior columns
  return g.PW == 1 ? g.OW >= 2 : ow_b - ow_a >= 2;
}

template <typename T>
void forward_cl_sweepk(const Geo& g, const Tensor& output, const Tensor& input,
                       const Tensor& weight, const Tensor& bias);

// T: the element type, also the accumulation type (fp32, or fp16 with fp16 arithmetic).
template <typename T>
void forward_cl_sweep(const Geo& g, const Tensor& output, const Tensor& input,
                      const Tensor& weight, const Tensor& bias) {
  if (g.KW != 3) {
    forward_cl_sweepk<T>(g, output, input, weight, bias);
    return;
  }
  constexpr int64_t L = Vec<T>::size();
  constexpr int R = 4;  // stride 1: 12 accumulators + 9 weights + bias + inputs (R = 6 spills)
  const int64_t S = g.SW;
  const T* in = input.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  const int64_t iN = input.stride(0), iH = input.stride(2), iW = input.stride(3);
  const int64_t oN = output.stride(0), oH = output.stride(2), oW = output.stride(3);
  const T* w = weight.const_data_ptr<T>();
  const int64_t w0 = weight.stride(0), w2 = weight.stride(2), w3 = weight.stride(3);
  const int64_t nv = g.C / L;
  // weights [vector][tap][L], bias [C]
  std::vector<T> wall(nv * 9 * L), ball(g.C, T(0));
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t k = 0; k < 9; ++k)
      wall[((c / L) * 9 + k) * L + c % L] = w[c * w0 + (k / 3) * w2 + (k % 3) * w3];
    if (bias.defined()) ball[c] = bias.const_data_ptr<T>()[c * bias.stride(0)];
  }
  // Stride 1, PW == 1: whole rows, pad columns as steps without input. Otherwise the
  // interior columns [ow_a, ow_b) are swept and the rest computed bounds-checked.
  const bool ze = S == 1 && g.PW == 1;
  const bool has_bias = bias.defined();
  const int64_t ow_a = ze ? 0 : (S == 1 ? g.PW : (g.PW + 1) / 2);
  const int64_t ow_b = ze ? g.OW : (S == 1 ? g.W + g.PW - 2 : (g.W + g.PW - 3) / 2 + 1);
  const int64_t ncols = ow_b - ow_a;
  const int64_t icol0 = ze ? 0 : ow_a * S - g.PW;
  // a zero row for the input rows above / below the image
  std::vector<T> zrow;
  if (g.PH > 0 || (g.OH - 1) * S + 3 - g.PH > g.H) zrow.assign(g.W * iW + g.C, T(0));
  const int64_t nfull = g.OH / R, rem = g.OH % R;
  const int64_t nbi = nfull + (rem ? 1 : 0);
  constexpr int64_t G = 4;  // channel vectors per task
  const int64_t ngr = div_ceil(nv, G);

  auto band = [&](auto rc, int64_t n, int64_t oh0, int64_t u) {
    constexpr int RB = decltype(rc)::value;
    const T* ip[2 * RB + 1];
    T* op[RB];
    const T* wt = wall.data() + u * 9 * L;
    const T* bt = ball.data() + u * L;
    for (int64_t i = 0; i < (S == 1 ? RB + 2 : 2 * RB + 1); ++i) {
      const int64_t ih = oh0 * S - g.PH + i;
      ip[i] = (ih >= 0 && ih < g.H ? in + n * iN + ih * iH : zrow.data()) + icol0 * iW + u * L;
    }
    for (int r = 0; r < RB; ++r) op[r] = out + n * oN + (oh0 + r) * oH + ow_a * oW + u * L;
    if (S == 1 && has_bias) sweep3_rows<T, RB, true>(ip, op, iW, oW, wt, bt, ncols, ze);
    else if (S == 1) sweep3_rows<T, RB, false>(ip, op, iW, oW, wt, bt, ncols, ze);
    else if (has_bias) sweep3s2_rows<T, RB, true>(ip, op, iW, oW, wt, bt, ncols);
    else sweep3s2_rows<T, RB, false>(ip, op, iW, oW, wt, bt, ncols);
    if (ze) return;
    for (int r = 0; r < RB; ++r) {  // border columns, bounds-checked
      const int64_t hbase = (oh0 + r) * S - g.PH;
      const int64_t kh_lo = std::max<int64_t>(0, -hbase);
      const int64_t kh_hi = std::min<int64_t>(3, g.H - hbase);
      const T* in_n = in + n * iN + u * L + hbase * iH;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        if (ow == ow_a) ow = ow_b;
        if (ow >= g.OW) break;
        const int64_t base = ow * S - g.PW;
        const int64_t kwlo = std::max<int64_t>(0, -base), kwhi = std::min<int64_t>(3, g.W - base);
        cl_pixel_checked<T, T>(in_n + base * iW, iH, iW, kh_lo, kh_hi, kwlo, kwhi, g, wt, L, bt,
                               out + n * oN + (oh0 + r) * oH + ow * oW + u * L, 1, 0);
      }
    }
  };
  at::parallel_for(0, g.N * nbi * ngr, 1, [&](int64_t begin, int64_t end) {
    for (int64_t it = begin; it < end; ++it) {
      const int64_t gr = it % ngr, bi = (it / ngr) % nbi, n = it / (ngr * nbi);
      for (int64_t u = gr * G; u < std::min(nv, (gr + 1) * G); ++u) {
        if (bi < nfull) {
          band(std::integral_constant<int, R>{}, n, bi * R, u);
        } else {  // the last rem rows: bands of 2, the last one overlapping if rem is odd
          for (int64_t oh0 = nfull * R; oh0 < g.OH; oh0 += 2)
            band(std::integral_constant<int, 2>{}, n, std::min(oh0, g.OH - 2), u);
        }
      }
    }
  });
}

template <typename T>
void forward_cl_sweepk(const Geo& g, const Tensor& output, const Tensor& input,
                       const Tensor& weight, const Tensor& bias) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t K = g.KW, KK = K * K, R = sweepk_rows_per_band(K);
  const T* in = input.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  const int64_t iN = input.stride(0), iH = input.stride(2), iW = input.stride(3);
  const int64_t oN = output.stride(0), oH = output.stride(2), oW = output.stride(3);
  const T* w = weight.const_data_ptr<T>();
  const int64_t w0 = weight.stride(0), w2 = weight.stride(2), w3 = weight.stride(3);
  const int64_t nv = g.C / L;
  std::vector<T> wall(nv * KK * L), ball(g.C, T(0));  // weights [vector][tap][L], bias [C]
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t k = 0; k < KK; ++k)
      wall[((c / L) * KK + k) * L + c % L] = w[c * w0 + (k / K) * w2 + (k % K) * w3];
    if (bias.defined()) ball[c] = bias.const_data_ptr<T>()[c * bias.stride(0)];
  }
  std::vector<T> zrow;  // the input rows above / below the image
  if (g.PH > 0 || (g.OH - 1) + K - g.PH > g.H) zrow.assign(g.W * iW + g.C, T(0));
  // bands of R rows; the last one ends at the last row (overlapping the one before)
  const int64_t nbi = div_ceil(g.OH, R);
  constexpr int64_t G = 4;  // channel vectors per task
  const int64_t ngr = div_ceil(nv, G);
  // first: the band's first row that is this task's (the last band starts earlier,
  // its rows before `first` go to a scratch row: no two tasks write one element)
  auto band = [&](auto kc, auto rc, int64_t n, int64_t oh0, int64_t first, int64_t u,
                  T* scratch) {
    constexpr int KC = decltype(kc)::value, RB = decltype(rc)::value;
    const T* ip[RB + KC - 1];
    T* op[RB];
    for (int i = 0; i < RB + KC - 1; ++i) {
      const int64_t ih = oh0 - g.PH + i;
      ip[i] = (ih >= 0 && ih < g.H ? in + n * iN + ih * iH : zrow.data()) + u * L;
    }
    for (int r = 0; r < RB; ++r)
      op[r] = oh0 + r >= first ? out + n * oN + (oh0 + r) * oH + u * L : scratch;
    const T* wt = wall.data() + u * KK * L;
    const T* bt = ball.data() + u * L;
    if (bias.defined()) sweepk_rows<T, KC, RB, true>(ip, op, iW, oW, wt, bt, g.OW, g.PW, g.W);
    else sweepk_rows<T, KC, RB, false>(ip, op, iW, oW, wt, bt, g.OW, g.PW, g.W);
  };
  at::parallel_for(0, g.N * nbi * ngr, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch;
    for (int64_t it = begin; it < end; ++it) {
      const int64_t gr = it % ngr, bi = (it / ngr) % nbi, n = it / (ngr * nbi);
      const int64_t oh0 = std::min(bi * R, g.OH - R);
      if (oh0 < bi * R && scratch.empty()) scratch.resize((g.OW - 1) * oW + L);
      for (int64_t u = gr * G; u < std::min(nv, (gr + 1) * G); ++u) {
        if (K == 5)
          band(std::integral_constant<int, 5>{}, std::integral_constant<int, 4>{}, n, oh0, bi * R,
               u, scratch.data());
        else
          band(std::integral_constant<int, 7>{}, std::integral_constant<int, 3>{}, n, oh0, bi * R,
               u, scratch.data());
      }
    }
  });
}

template <typename scalar_t>
void forward_cl_direct(const Geo& g, const Tensor& output, const Tensor& input,
                       const Tensor& weight, const Tensor& bias) {
  using acc_t = acc_of<scalar_t>;
#if DWCONV_SWEEP3
  // fp32, and fp16 where it accumulates in fp16 (fp16 arithmetic, 8 lanes)
  if constexpr (std::is_same_v<scalar_t, acc_t> &&
                (std::is_same_v<acc_t, float> || std::is_same_v<acc_t, c10::Half>)) {
    if (use_cl_sweep<acc_t>(g)) {
      forward_cl_sweep<acc_t>(g, output, input, weight, bias);
      return;
    }
  }
#endif
  constexpr int64_t L = Vec<acc_t>::size();
  constexpr int U = 2;
  constexpr int64_t CB = U * L;  // channels per block
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const int64_t bs = bias.defined() ? bias.stride(0) : 0;
  const int64_t iN = input.stride(0), iH = input.stride(2), iW = input.stride(3);
  const int64_t oN = output.stride(0), oH = output.stride(2), oW = output.stride(3);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const int64_t w0 = weight.stride(0), w2 = weight.stride(2), w3 = weight.stride(3);
  const int64_t K = g.K();
  std::vector<int64_t> toff(K), kwlo(g.OW), kwhi(g.OW);
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) toff[kh * g.KW + kw] = kh * g.DH * iH + kw * g.DW * iW;
  int64_t ow_a = g.OW, ow_b = g.OW;  // interior columns [ow_a, ow_b)
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    const int64_t base = ow * g.SW - g.PW;
    kwlo[ow] = std::max<int64_t>(0, div_ceil(-base, g.DW));
    kwhi[ow] = std::min<int64_t>(g.KW, div_floor(g.W - 1 - base, g.DW) + 1);
    const bool full = kwlo[ow] == 0 && kwhi[ow] == g.KW;
    if (full && ow_a == g.OW) ow_a = ow;
    if (full) ow_b = ow + 1;
  }
  const int64_t work = std::max<int64_t>(1, g.OW * g.C * K);
  const int64_t grain = std::max<int64_t>(1, 65536 / work);
  // KW = 3: px_run over both vectors of a block measured faster in place (k3 is
  // mostly memory-bound; one pass per pixel instead of one per vector).
  const auto slide = g.KW > 3 ? pick_slide_row<scalar_t, acc_t, scalar_t, 0, CB>(g) : nullptr;
  // The partial last vector (C % L != 0) of the interior pixels (any KW in {3, 5, 7}).
  const auto slide_pt = pick_slide_row<scalar_t, acc_t, scalar_t, 0, CB, true>(g);

  // Weights [block][tap][CB] and bias [block][CB] of every channel block, once.
  const int64_t nblocks = div_ceil(g.C, CB);
  std::vector<acc_t> wall(nblocks * K * CB), ball(nblocks * CB);
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * CB, cw = std::min<int64_t>(CB, g.C - c0);
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw)
        for (int64_t c = 0; c < CB; ++c)
          wall[(blk * K + kh * g.KW + kw) * CB + c] =
              c < cw ? static_cast<acc_t>(w[(c0 + c) * w0 + kh * w2 + kw * w3]) : acc_t(0);
    for (int64_t c = 0; c < CB; ++c)
      ball[blk * CB + c] = (b && c < cw) ? static_cast<acc_t>(b[(c0 + c) * bs]) : acc_t(0);
  }

  // Rows outer, channel blocks inner: the input rows of an output row stay cache-hot
  // across its blocks.
  at::parallel_for(0, g.N * g.OH, grain, [&](int64_t begin, int64_t end) {
    std::vector<const scalar_t*> bases(std::max<int64_t>(1, ow_b - ow_a));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c0 = 0; c0 < g.C; c0 += CB) {
        const int64_t cw = std::min<int64_t>(CB, g.C - c0);
        const acc_t* wtd = wall.data() + (c0 / CB) * K * CB;
        const acc_t* bbd = ball.data() + (c0 / CB) * CB;
        const int64_t nvec = cw / L, tail = cw % L;
        const int64_t n = r / g.OH, oh = r % g.OH;
        const int64_t hbase = oh * g.SH - g.PH;
        const int64_t kh_lo = std::max<int64_t>(0, div_ceil(-hbase, g.DH));
        const int64_t kh_hi = std::min<int64_t>(g.KH, div_floor(g.H - 1 - hbase, g.DH) + 1);
        const scalar_t* in_n = in + n * iN + c0 + hbase * iH;  // tap (0, 0) row
        scalar_t* orow = out + n * oN + oh * oH + c0;
        auto checked = [&](int64_t ow) {
          cl_pixel_checked<scalar_t, acc_t>(in_n + (ow * g.SW - g.PW) * iW, iH, iW, kh_lo, kh_hi,
                                            kwlo[ow], kwhi[ow], g, wtd, CB, bbd,
                                            orow + ow * oW, nvec, tail);
        };
        if (kh_hi <= kh_lo) {
          for (int64_t ow = 0; ow < g.OW; ++ow) checked(ow);
          continue;
        }
        for (int64_t ow = 0; ow < ow_a; ++ow) checked(ow);
        const int64_t ni = ow_b - ow_a;
        if (ni > 0) {
          for (int64_t q = 0; q < ni; ++q)
            bases[q] = in_n + ((ow_a + q) * g.SW - g.PW) * iW;
          // valid rows kh_lo..kh_hi-1: a contiguous run of taps
          const int64_t* tf = toff.data() + kh_lo * g.KW;
          const int64_t nt = (kh_hi - kh_lo) * g.KW;
          const acc_t* wk = wtd + kh_lo * g.KW * CB;
          // The last, partial vector of the block (C not a multiple of L).
          auto partial_vector = [&]() {
            if (!tail) return;
            if (slide_pt) {
              slide_pt(in_n + kh_lo * g.DH * iH + (ow_a * g.SW - g.PW) * iW + nvec * L, iW,
                       g.DH * iH, kh_hi - kh_lo, wk + nvec * L, CB, bbd + nvec * L,
                       orow + ow_a * oW + nvec * L, oW, ni, tail);
            } else {  // checked per pixel
              for (int64_t ow = ow_a; ow < ow_b; ++ow)
                cl_pixel_checked<scalar_t, acc_t>(in_n + (ow * g.SW - g.PW) * iW + nvec * L, iH,
                                                  iW, kh_lo, kh_hi, 0, g.KW, g, wtd + nvec * L,
                                                  CB, bbd + nvec * L,
                                                  orow + ow * oW + nvec * L, 0, tail);
            }
          };
          if (slide) {
            const scalar_t* i0 = in_n + kh_lo * g.DH * iH + (ow_a * g.SW - g.PW) * iW;
            for (int64_t u = 0; u < nvec; ++u)
              slide(i0 + u * L, iW, g.DH * iH, kh_hi - kh_lo,
                    wk + u * L, CB, bbd + u * L, orow + ow_a * oW + u * L, oW, ni, L);
            partial_vector();
          } else if (cw == CB) {
            px_run<scalar_t, scalar_t, acc_t, U>(bases.data(), ni, tf, nt, wk, CB, bbd,
                                                 orow + ow_a * oW, oW);
          } else {
            for (int64_t u = 0; u < nvec; ++u) {  // full vectors of a partial block
              if (u > 0)
                for (int64_t q = 0; q < ni; ++q) bases[q] += L;
              px_run<scalar_t, scalar_t, acc_t, 1>(bases.data(), ni, tf, nt, wk + u * L, CB,
                                                   bbd + u * L, orow + ow_a * oW + u * L, oW);
            }
            partial_vector();
          }
        }
        for (int64_t ow = std::max(ow_b, ow_a); ow < g.OW; ++ow) checked(ow);
      }
    }
  });
}

// DWCONV_ENGINE=planar|tiles|cl (read once) forces the forward engine, for measurements.
int engine_override() {
  static const int v = [] {
    const char* e = std::getenv("DWCONV_ENGINE");
    if (e == nullptr) return 0;
    if (std::strcmp(e, "planar") == 0) return 1;
    if (std::strcmp(e, "tiles") == 0) return 2;
    if (std::strcmp(e, "cl") == 0) return 3;
    return 0;
  }();
  return v;
}

// The tile engine vectorises over channels: with fewer channels than half a
// vector the planar engine (vectorised over the width) wastes less.
template <typename acc_t>
bool use_tile_engine(const Geo& g) {
  constexpr int64_t L = Vec<acc_t>::size();
  const int ov = engine_override();
  if (ov) return ov == 2;
  return 2 * g.C >= L;
}

// Channels-last maps where most outputs see every tap are read in place.
bool use_cl_direct_engine(const Geo& g, const Tensor& input, const Tensor& output) {
  if (!(g.M == 1 && g.C > 1 && input.stride(1) == 1 && output.stride(1) == 1)) return false;
  const int ov = engine_override();
  if (ov) return ov == 3;
  const int64_t span_h = g.DH * (g.KH - 1), span_w = g.DW * (g.KW - 1);
  const double inner_h = std::max<int64_t>(0, g.H - span_h) / static_cast<double>(g.SH);
  const double inner_w = std::max<int64_t>(0, g.W - span_w) / static_cast<double>(g.SW);
  return inner_h * inner_w >= 0.6 * static_cast<double>(g.OH * g.OW);
}


// The forward engine for this conv (NCHW or channels-last, any strides).
template <typename scalar_t>
void forward_impl(const Tensor& output, const Tensor& input, const Tensor& weight,
                  const Tensor& bias, IntArrayRef kernel_size, IntArrayRef stride,
                  IntArrayRef padding, IntArrayRef dilation) {
  const Geo g = make_geo(input, weight, kernel_size, stride, padding, dilation);
  if (use_cl_direct_engine(g, input, output)) {
    forward_cl_direct<scalar_t>(g, output, input, weight, bias);
  } else if (use_tile_engine<acc_of<scalar_t>>(g)) {
    forward_tiles<scalar_t>(g, output, input, weight, bias);
  } else {
    forward_planar<scalar_t>(g, output, input, weight, bias);
  }
}

bool use_channels_last_engine(const Geo& g, const Tensor& a, const Tensor& b) {
  return g.M == 1 && g.C > 1 && a.stride(1) == 1 && b.stride(1) == 1;
}

// ---------------------------------------------------------------------------
// grad_input, planar: gather form of the transposed conv, per (image, channel).
// For input row ih and horizontal phase r = (iw + PW) % SW, the contributions are
// rows oh = (ih + PH - kh*DH) / SH (when divisible and in range) and taps kw with
// (kw*DW) % SW == r, reading grad_output at ow = t - (kw*DW)/SW, t = (iw+PW)/SW.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void grad_input_planar(const Geo& g, const Tensor& grad_input, const Tensor& grad_output,
                       const Tensor& weight) {
  using acc_t = acc_of<scalar_t>;
  constexpr int64_t L = Vec<acc_t>::size();
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
  const int64_t gN = grad_output.stride(0), gC = grad_output.stride(1),
                gH = grad_output.stride(2), gW = grad_output.stride(3);
  const int64_t xN = grad_input.stride(0), xC = grad_input.stride(1),
                xH = grad_input.stride(2), xW = grad_input.stride(3);
  const int64_t K = g.K();
  const int64_t LP = (g.DW * (g.KW - 1)) / g.SW;                   // left pad of go rows
  const int64_t TH = div_ceil(g.PW + g.W, g.SW);                   // max t (exclusive)
  const int64_t GL = LP + std::max<int64_t>(round_up(TH, 4 * L) + 4 * L, g.OW);  // go row length
  const int64_t NRg = (g.DH * (g.KH - 1)) / g.SH + 2;              // go rows per ring
  const int64_t work = std::max<int64_t>(1, g.H * g.W * K);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);

  at::parallel_for(0, g.N * g.C, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> ring(g.M * NRg * GL, acc_t(0));
    std::vector<int64_t> slot_row(g.M * NRg, -1);
    std::vector<acc_t> wall(g.M * K), wts(g.M * K);
    std::vector<const acc_t*> ptrs(g.M * K);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.C, c = task % g.C;
      std::fill(slot_row.begin(), slot_row.end(), -1);
      for (int64_t j = 0; j < g.M; ++j)
        load_weights<scalar_t, acc_t>(weight, c * g.M + j, wall.data() + j * K);
      scalar_t* gplane = gi + n * xN + c * xC;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        scalar_t* grow = gplane + ih * xH;
        for (int64_t r = 0; r < g.SW; ++r) {
          const int64_t t_lo = std::max<int64_t>(0, div_ceil(g.PW - r, g.SW));
          const int64_t t_hi = div_ceil(g.PW + g.W - r, g.SW);
          if (t_hi <= t_lo) continue;
          int64_t nt = 0;
          for (int64_t j = 0; j < g.M; ++j) {
            const scalar_t* goplane = go + n * gN + (c * g.M + j) * gC;
            for (int64_t kh = 0; kh < g.KH; ++kh) {
              const int64_t num = ih + g.PH - kh * g.DH;
              if (num < 0) break;
              if (num % g.SH != 0) continue;
              const int64_t oh = num / g.SH;
              if (oh >= g.OH) continue;
              const int64_t slot = j * NRg + oh % NRg;
              acc_t* rb = ring.data() + slot * GL;
              if (slot_row[slot] != oh) {
                slot_row[slot] = oh;
                convert_row(goplane + oh * gH, gW, rb + LP, g.OW);
              }
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                if ((kw * g.DW) % g.SW != r) continue;
                ptrs[nt] = rb + LP - (kw * g.DW) / g.SW + t_lo;
                wts[nt] = wall[j * K + kh * g.KW + kw];
                ++nt;
              }
            }
          }
          scalar_t* orow = grow + (r + g.SW * t_lo - g.PW) * xW;
          conv_row<scalar_t, acc_t>(orow, g.SW * xW, t_hi - t_lo, ptrs.data(), wts.data(), nt,
                                    acc_t(0));
        }
      }
    }
  });
}

// grad_input, channels-last (multiplier 1): per input pixel, gather the valid
// (kh, oh) and (kw, ow) pairs (precomputed), vectorised over channels.
template <typename scalar_t>
void grad_input_nhwc(const Geo& g, const Tensor& grad_input, const Tensor& grad_output,
                     const Tensor& weight) {
  using acc_t = acc_of<scalar_t>;
  using AV = Vec<acc_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = AV::size();
  constexpr int64_t CB = 4 * L;
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
  const int64_t gN = grad_output.stride(0), gH = grad_output.stride(2), gW = grad_output.stride(3);
  const int64_t xN = grad_input.stride(0), xH = grad_input.stride(2), xW = grad_input.stride(3);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const int64_t w0 = weight.stride(0), w2 = weight.stride(2), w3 = weight.stride(3);
  const int64_t K = g.K();
  const int64_t work = std::max<int64_t>(1, g.W * g.C * K);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);

  // (kw, ow) pairs for every input column.
  std::vector<int64_t> wp_start(g.W + 1), wp_kw, wp_ow;
  for (int64_t iw = 0; iw < g.W; ++iw) {
    wp_start[iw] = static_cast<int64_t>(wp_kw.size());
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t num = iw + g.PW - kw * g.DW;
      if (num < 0) break;
      if (num % g.SW != 0) continue;
      const int64_t ow = num / g.SW;
      if (ow >= g.OW) continue;
      wp_kw.push_back(kw);
      wp_ow.push_back(ow);
    }
  }
  wp_start[g.W] = static_cast<int64_t>(wp_kw.size());

  at::parallel_for(0, g.N * g.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> wt(K * CB);
    std::vector<int64_t> hk(g.KH), ho(g.KH);
    for (int64_t c0 = 0; c0 < g.C; c0 += CB) {
      const int64_t cw = std::min<int64_t>(CB, g.C - c0);
      for (int64_t tap = 0; tap < K; ++tap) {
        const int64_t kh = tap / g.KW, kw = tap % g.KW;
        for (int64_t c = 0; c < CB; ++c)
          wt[tap * CB + c] = c < cw ? static_cast<acc_t>(w[(c0 + c) * w0 + kh * w2 + kw * w3])
                                    : acc_t(0);
      }
      const int64_t nvec = cw / L;
      const int64_t tail = cw - nvec * L;
      for (int64_t rr = begin; rr < end; ++rr) {
        const int64_t n = rr / g.H, ih = rr % g.H;
        int64_t nh = 0;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t num = ih + g.PH - kh * g.DH;
          if (num < 0) break;
          if (num % g.SH != 0) continue;
          const int64_t oh = num / g.SH;
          if (oh >= g.OH) continue;
          hk[nh] = kh;
          ho[nh] = oh;
          ++nh;
        }
        const scalar_t* go_n = go + n * gN + c0;
        scalar_t* xrow = gi + n * xN + ih * xH + c0;
        for (int64_t iw = 0; iw < g.W; ++iw) {
          AV acc[4] = {AV(acc_t(0)), AV(acc_t(0)), AV(acc_t(0)), AV(acc_t(0))};
          AV acct(acc_t(0));
          for (int64_t a = 0; a < nh; ++a) {
            const scalar_t* gorow = go_n + ho[a] * gH;
            const acc_t* wrow = wt.data() + hk[a] * g.KW * CB;
            for (int64_t p = wp_start[iw]; p < wp_start[iw + 1]; ++p) {
              const scalar_t* gp = gorow + wp_ow[p] * gW;
              const acc_t* wq = wrow + wp_kw[p] * CB;
              if (nvec == 4) {
                AV x0, x1, x2, x3;
                io::load2(gp, x0, x1);
                io::load2(gp + 2 * L, x2, x3);
                acc[0] = vfmadd(x0, AV::loadu(wq), acc[0]);
                acc[1] = vfmadd(x1, AV::loadu(wq + L), acc[1]);
                acc[2] = vfmadd(x2, AV::loadu(wq + 2 * L), acc[2]);
                acc[3] = vfmadd(x3, AV::loadu(wq + 3 * L), acc[3]);
              } else {
                for (int64_t u = 0; u < nvec; ++u)
                  acc[u] = vfmadd(io::load(gp + u * L), AV::loadu(wq + u * L), acc[u]);
                if (tail)
                  acct = vfmadd(io::load_partial(gp + nvec * L, tail),
                                AV::loadu(wq + nvec * L), acct);
              }
            }
          }
          scalar_t* xp = xrow + iw * xW;
          for (int64_t u = 0; u < nvec; ++u) io::store(xp + u * L, acc[u]);
          if (tail) io::store_partial(xp + nvec * L, acct, tail);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// grad_weight (fp32 / fp64 accumulation), parallel over channels: no atomics.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void grad_weight_planar(const Geo& g, const Tensor& grad_weight, const Tensor& grad_output,
                        const Tensor& input) {
  using acc_t = at::opmath_type<scalar_t>;
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
  const int64_t gN = grad_output.stride(0), gC = grad_output.stride(1),
                gH = grad_output.stride(2), gW = grad_output.stride(3);
  const int64_t iN = input.stride(0), iC = input.stride(1), iH = input.stride(2), iW = input.stride(3);
  const int64_t w0 = grad_weight.stride(0), w2 = grad_weight.stride(2), w3 = grad_weight.stride(3);
  const int64_t K = g.K();
  const int64_t OWr = round_up(g.OW, L);
  const int64_t work = std::max<int64_t>(1, g.N * g.OH * g.OW * K * g.M);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);

  at::parallel_for(0, g.C, grain, [&](int64_t begin, int64_t end) {
    RowRing<acc_t> ring(g, OWr);
    std::vector<acc_t> gorow(g.M * OWr, acc_t(0));
    std::vector<acc_t> A(g.M * K * 2 * L);
    const int64_t full = (g.OW / L) * L;
    const int64_t tail = g.OW - full;
    for (int64_t c = begin; c < end; ++c) {
      std::fill(A.begin(), A.end(), acc_t(0));
      for (int64_t n = 0; n < g.N; ++n) {
        ring.reset();
        const scalar_t* plane = in + n * iN + c * iC;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          for (int64_t j = 0; j < g.M; ++j)
            convert_row(go + n * gN + (c * g.M + j) * gC + oh * gH, gW,
                        gorow.data() + j * OWr, g.OW);
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
            if (ih < 0 || ih >= g.H) continue;
            const acc_t* rb = ring.row(ih, plane + ih * iH, iW);
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const acc_t* src = rb + ring.tap_offset(kw, g.DW);
              for (int64_t j = 0; j < g.M; ++j) {
                const acc_t* gr = gorow.data() + j * OWr;
                acc_t* a = A.data() + ((j * K) + kh * g.KW + kw) * 2 * L;
                AV a0 = AV::loadu(a), a1 = AV::loadu(a + L);
                int64_t t = 0;
                for (; t + 2 * L <= full; t += 2 * L) {
                  a0 = vfmadd(AV::loadu(gr + t), AV::loadu(src + t), a0);
                  a1 = vfmadd(AV::loadu(gr + t + L), AV::loadu(src + t + L), a1);
                }
                if (t < full) {
                  a0 = vfmadd(AV::loadu(gr + t), AV::loadu(src + t), a0);
                }
                if (tail) {
                  a1 = vfmadd(AV::loadu(gr + full, tail), AV::loadu(src + full, tail), a1);
                }
                a0.store(a);
                a1.store(a + L);
              }
            }
          }
        }
      }
      for (int64_t j = 0; j < g.M; ++j) {
        for (int64_t tap = 0; tap < K; ++tap) {
          const acc_t* a = A.data() + ((j * K) + tap) * 2 * L;
          acc_t s = 0;
          for (int64_t i = 0; i < 2 * L; ++i) s += a[i];
          const int64_t kh = tap / g.KW, kw = tap % g.KW;
          gw[(c * g.M + j) * w0 + kh * w2 + kw * w3] = static_cast<scalar_t>(s);
        }
      }
    }
  });
}

// grad_weight, channels-last (multiplier 1): per channel block and tap, the
// valid output pixels form a rectangle; accumulate go * shifted input over it.
template <typename scalar_t>
void grad_weight_nhwc(const Geo& g, const Tensor& grad_weight, const Tensor& grad_output,
                      const Tensor& input) {
  using acc_t = at::opmath_type<scalar_t>;
  using AV = Vec<acc_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = AV::size();
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
  const int64_t gN = grad_output.stride(0), gH = grad_output.stride(2), gW = grad_output.stride(3);
  const int64_t iN = input.stride(0), iH = input.stride(2), iW = input.stride(3);
  const int64_t w0 = grad_weight.stride(0), w2 = grad_weight.stride(2), w3 = grad_weight.stride(3);
  const int64_t ngroups = div_ceil(g.C, L);  // channel groups of L lanes
  const int64_t work = std::max<int64_t>(1, g.N * g.OH * g.OW * g.K() * L);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);

  at::parallel_for(0, ngroups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t grp = begin; grp < end; ++grp) {
      const int64_t c0 = grp * L;
      const int64_t cw = std::min<int64_t>(L, g.C - c0);
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        // oh with 0 <= oh*SH - PH + kh*DH < H
        const int64_t oh_lo = std::max<int64_t>(0, div_ceil(g.PH - kh * g.DH, g.SH));
        const int64_t oh_hi = std::min<int64_t>(g.OH, div_floor(g.H - 1 + g.PH - kh * g.DH, g.SH) + 1);
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t ow_lo = std::max<int64_t>(0, div_ceil(g.PW - kw * g.DW, g.SW));
          const int64_t ow_hi = std::min<int64_t>(g.OW, div_floor(g.W - 1 + g.PW - kw * g.DW, g.SW) + 1);
          AV a0(acc_t(0)), a1(acc_t(0));
          for (int64_t n = 0; n < g.N; ++n) {
            for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
              const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
              const scalar_t* gp = go + n * gN + oh * gH + c0;
              const scalar_t* ip = in + n * iN + ih * iH + c0 + (kw * g.DW - g.PW) * iW;
              if (cw == L) {
                int64_t ow = ow_lo;
                for (; ow + 1 < ow_hi; ow += 2) {
                  a0 = vfmadd(io::load(gp + ow * gW), io::load(ip + ow * g.SW * iW), a0);
                  a1 = vfmadd(io::load(gp + (ow + 1) * gW),
                              io::load(ip + (ow + 1) * g.SW * iW), a1);
                }
                if (ow < ow_hi)
                  a0 = vfmadd(io::load(gp + ow * gW), io::load(ip + ow * g.SW * iW), a0);
              } else {
                for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
                  a0 = vfmadd(io::load_partial(gp + ow * gW, cw),
                              io::load_partial(ip + ow * g.SW * iW, cw), a0);
              }
            }
          }
          __at_align__ acc_t s[L];
          (a0 + a1).store(s);
          for (int64_t c = 0; c < cw; ++c)
            gw[(c0 + c) * w0 + kh * w2 + kw * w3] = static_cast<scalar_t>(s[c]);
        }
      }
    }
  });
}


template <typename scalar_t>
void grad_input_impl(const Tensor& grad_input, const Tensor& grad_output, const Tensor& input,
                     const Tensor& weight, IntArrayRef kernel_size, IntArrayRef stride,
                     IntArrayRef padding, IntArrayRef dilation) {
  const Geo g = make_geo(input, weight, kernel_size, stride, padding, dilation);
  if (use_channels_last_engine(g, grad_input, grad_output)) {
    grad_input_nhwc<scalar_t>(g, grad_input, grad_output, weight);
  } else {
    grad_input_planar<scalar_t>(g, grad_input, grad_output, weight);
  }
}

template <typename scalar_t>
void grad_weight_impl(const Tensor& grad_weight, const Tensor& grad_output, const Tensor& input,
                      const Tensor& weight, IntArrayRef kernel_size, IntArrayRef stride,
                      IntArrayRef padding, IntArrayRef dilation) {
  const Geo g = make_geo(input, weight, kernel_size, stride, padding, dilation);
  if (use_channels_last_engine(g, input, grad_output)) {
    grad_weight_nhwc<scalar_t>(g, grad_weight, grad_output, input);
  } else {
    grad_weight_planar<scalar_t>(g, grad_weight, grad_output, input);
  }
}

#endif  // DWCONV_KERNEL_BODY
