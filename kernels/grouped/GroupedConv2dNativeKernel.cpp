// Native CPU grouped 2-D convolution kernels (forward, grad_input, grad_weight).
//
// Kept in the torch-arm-recipe repository as
// kernels/grouped/GroupedConv2dNativeKernel.cpp; installed into the PyTorch tree as
// aten/src/ATen/native/cpu/GroupedConv2dNativeKernel.cpp, so the build compiles it
// once per CPU capability (x86: DEFAULT, AVX2, AVX512; aarch64: DEFAULT = NEON,
// SVE256 where the build enables it) with -DCPU_CAPABILITY=X -DCPU_CAPABILITY_X.
// Everything is written with at::vec::Vectorized and at::parallel_for.
//
// A direct convolution over "flat planes" (no im2col):
//  * A task is (image, block of groups, band of output rows). The input rows the
//    band needs are copied, converted to the accumulation type (fp32 for
//    fp16/bf16, fp64 for double), into zero-padded planes, one per input channel
//    and stride phase: padded row R goes to row phase R % SH at row R / SH,
//    padded column P to column phase P % SW at column P / SW, every plane with
//    the same pitch PLc = OW + (KW-1)*DW/SW. Output (oh, ow) then reads tap
//    (kh, kw) at flat index oh*PLc + ow plus a constant per tap, so the band is
//    ONE 1-D multi-channel correlation: contiguous loads for every tap, no border
//    branches. NCHW planes come in by row copies, channels-last ones through
//    in-register L x L transposes; for channels-last sides a task takes as many
//    groups as fit (pixels read and written whole, in order).
//  * Two register-blocked micro-kernels (MR, NR, P, V compile-time, the block
//    stays in the 32 (AVX-512) or 16 vector registers):
//    - positions in the lanes (pos_block): MR output channels of a group x NR
//      vectors of flat positions; per (input channel, tap) step NR input loads,
//      MR weight broadcasts, MR*NR FMAs. Results go to a per-thread buffer
//      (the PLc - OW extra columns per row are computed and dropped) and out
//      by row copies (NCHW) or L x L transposes (channels-last).
//    - output channels in the lanes (chan_block): P positions x V vectors of a
//      group's output channels; per step V weight loads, P broadcasts from the
//      same planes, P*V FMAs; rows are walked without the extra columns and
//      channels-last results are stored in place. Used when Cout/G fills whole
//      vectors and the rows are short (small maps) or the output is
//      channels-last (see by_channel in flat_conv). A channels-last source is
//      then not transposed into planes: its pixels are copied whole into a padded
//      channels-last band, the stride phases left interleaved, and position p
//      broadcasts from p * (stride x band pixel width) further on.
//    Weights are repacked once per task's groups ([block][step][lanes], L x L
//    transposes), the bias folded into the accumulators' start.
//  * In-place 1x1 (direct_conv): channels-last, 1x1, stride 1, no padding, every pixel of
//    the batch at one stride on both sides: no planes (packing them cost as much as the
//    few FMAs per input value of a grouped 1x1). Per group a GEMM over pixels with the
//    chan_block product (direct_block): P pixels x V vectors of output channels, inputs
//    broadcast straight from the source pixels, results stored into the channels-last
//    output, masked where the group's channels leave the last vector partly empty. Tasks
//    are (pixel chunk, block of groups); grad_input of such a conv takes it too.
// grad_input is the same engine run on grad_output, once per stride phase of
// the input (rows rh + SH*j, columns rw + SW*i): each phase is a stride-1
// correlation of grad_output with the taps that reach it, weights read
// transposed per group; no atomics, no zero fill, no scatter.
// grad_weight reuses the forward planes: for each (output channel, input channel,
// tap) it is the dot product of the flat grad_output rows (zero in the dropped
// columns) with the shifted flat input planes, in MRW x RRW register blocks; tasks
// own (group, block of input channels), so there are no atomics.
// Every dtype accumulates in fp32 (fp64 for double), on every CPU: a grouped conv
// sums Cin/G*kh*kw products per output, too many for fp16 partial sums.
// Memory: forward allocates no tensor but its output; per thread it uses the
// band's planes and results (~kBandBytes) and the task's groups' weights in the
// accumulation type (at most the group block's share of the weight tensor).
// Test / benchmark hook: PYTORCH_NATIVE_GCONV_ENGINE=planar|channel|direct forces a
// micro-kernel family or the in-place 1x1 path where the conv allows it (read at every call).

#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/native/GroupedConv2dNative.h>

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
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__clang__)
#define GCONV_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define GCONV_UNROLL _Pragma("GCC unroll 16")
#else
#define GCONV_UNROLL
#endif

namespace at::native {
namespace {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// Vector registers the compiler has for Vectorized values: 32 with AVX-512
// (64-byte vectors); 16 with AVX2, NEON (Vectorized<float> is two q registers)
// and the rest.
constexpr int kVecRegs = sizeof(Vec<float>) >= 64 ? 32 : 16;
// Forward register block: MR output channels x NR vectors of output positions.
constexpr int kMaxMR = kVecRegs == 32 ? 8 : 6;
constexpr int max_nr(int mr) {
  // MR*NR accumulators + NR input vectors + 1 broadcast weight fit the registers.
  return kVecRegs == 32 ? (mr <= 2 ? 8 : mr == 3 ? 7 : mr == 4 ? 6 : mr <= 6 ? 4 : 3)
                        : (mr == 1 ? 6 : mr == 2 ? 4 : mr <= 4 ? 3 : 2);
}
// grad_weight register block: MRW output channels x RRW (input channel, tap) steps.
constexpr int kMRW = kVecRegs == 32 ? 4 : 2;
constexpr int kRRW = 4;
// Per-thread working set of one band (planes + results), bytes.
constexpr int64_t kBandBytes = 192 * 1024;

// is_reduced_v, div_floor / div_ceil / round_up, fill_conv_geometry, IO<scalar_t, acc_t>,
// copy_same, reduced_to_float: shared with the depthwise kernel.
#include <ATen/native/cpu/NativeConvKernelUtils.h>

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return std::min(std::max(v, lo), hi);
}

// dst[i] = (acc_t) src[i * ss], i < n.
template <typename scalar_t, typename acc_t>
inline void convert_in(const scalar_t* src, int64_t ss, acc_t* dst, int64_t n) {
  if (n <= 0) return;
  if (ss == 1) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      copy_same(src, dst, n);
      return;
    } else {
      reduced_to_float(src, dst, n);  // acc_t is float
      return;
    }
  }
  int64_t i = 0;
  if (ss == 2) {
    // Stride-2 convs' column phases: two vectors of the row, their even lanes (reads stay
    // below src[2 * (n - 1)], the last element needed).
    using io = IO<scalar_t, acc_t>;
    constexpr int64_t L = Vec<acc_t>::size();
    for (; i + L < n; i += L) {
      auto even_odd = at::vec::deinterleave2(io::load(src + 2 * i), io::load(src + 2 * i + L));
      std::get<0>(even_odd).store(dst + i);
    }
  }
  for (; i < n; ++i) dst[i] = static_cast<acc_t>(src[i * ss]);
}

// dst[i * ds] = (scalar_t) src[i], i < n.
template <typename scalar_t, typename acc_t>
inline void convert_out(const acc_t* src, scalar_t* dst, int64_t ds, int64_t n) {
  if (n <= 0) return;
  if (ds == 1) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      copy_same(src, dst, n);
      return;
    } else {
      constexpr int64_t L = Vec<acc_t>::size();
      int64_t i = 0;
      for (; i + 2 * L <= n; i += 2 * L) {
        at::vec::convert_from_float<scalar_t>(Vec<acc_t>::loadu(src + i),
                                              Vec<acc_t>::loadu(src + i + L))
            .store(dst + i);
      }
      for (; i < n; ++i) dst[i] = static_cast<scalar_t>(src[i]);
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) dst[i * ds] = static_cast<scalar_t>(src[i]);
}

// In-register transpose of an L x L block (L = Vec<T>::size(), a power of two):
// log2(L) rounds of perfect shuffles (interleave2 of rows i and i + L/2).
template <typename T>
inline void transpose_square(Vec<T>* v) {
  constexpr int n = Vec<T>::size();
  Vec<T> t[n];
  for (int r = n; r > 1; r /= 2) {
    for (int i = 0; i < n / 2; ++i) {
      auto pr = at::vec::interleave2(v[i], v[i + n / 2]);
      t[2 * i] = std::get<0>(pr);
      t[2 * i + 1] = std::get<1>(pr);
    }
    for (int i = 0; i < n; ++i) v[i] = t[i];
  }
}

// One image of a 4-D tensor: element (c, row, col) at p[c*sC + row*sH + col*sW].
template <typename T>
struct Plane3 {
  T* p;
  int64_t sC, sH, sW, H, W;
};

template <typename T>
Plane3<T> image_of(T* base, const Tensor& t, int64_t n) {
  return {base + n * t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.size(2), t.size(3)};
}

// ---------------------------------------------------------------------------
// A flat-plane job: which source pixels the planes hold, the taps, where the
// results go. Forward: one job (source = input, phases = stride). grad_input:
// one job per stride phase of the input (source = grad_output, one phase).
// ---------------------------------------------------------------------------
struct Tap {
  int64_t phase;   // which phase plane
  int64_t qh, qw;  // plane row / column of output (0, 0)
  int64_t widx;    // kh * KW + kw of the weight
};

struct FlatJob {
  int64_t PSH = 1, PSW = 1;          // phases of the source (forward: the stride)
  int64_t r_origin = 0, c_origin = 0;  // source row / col of plane row 0 / col 0, phase 0
  int64_t rows = 0, cols = 0;        // output rows / columns of the job
  int64_t PLc = 0;                   // pitch of every plane and of the flat results
  int64_t maxqh = 0;                 // extra plane rows below a band
  std::vector<Tap> taps;
  // output (i, j) -> destination (dr0 + i*DSH, dc0 + j*DSW)
  int64_t dr0 = 0, DSH = 1, dc0 = 0, DSW = 1;
  int64_t nph() const { return PSH * PSW; }
  // where a tap reads output (0, 0) in a flat plane of pitch PLc
  int64_t off(const Tap& t) const { return t.qh * PLc + t.qw; }
};

void finish_job(FlatJob& job, std::vector<Tap> taps) {
  int64_t maxqw = 0;
  job.maxqh = 0;
  for (const auto& t : taps) {
    maxqw = std::max(maxqw, t.qw);
    job.maxqh = std::max(job.maxqh, t.qh);
  }
  job.PLc = job.cols + maxqw;
  job.taps = std::move(taps);
}

struct GGeo {
  int64_t N, C, OC, G, CG, OG, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW;
};

GGeo make_geo(const Tensor& input, const Tensor& weight, IntArrayRef stride,
              IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  GGeo g;
  fill_conv_geometry(g, input, weight, weight.size(2), weight.size(3), stride, padding,
                     dilation);
  g.G = groups;
  g.CG = g.C / groups;
  g.OG = g.OC / groups;
  return g;
}

// Forward: output (oh, ow), tap (kh, kw) reads padded input (oh*SH + kh*DH,
// ow*SW + kw*DW) = phase (kh*DH % SH, kw*DW % SW) at (oh + kh*DH/SH, ow + kw*DW/SW).
FlatJob forward_job(const GGeo& g) {
  FlatJob job;
  job.PSH = g.SH;
  job.PSW = g.SW;
  job.r_origin = -g.PH;
  job.c_origin = -g.PW;
  job.rows = g.OH;
  job.cols = g.OW;
  std::vector<Tap> taps;
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      taps.push_back({((kh * g.DH) % g.SH) * g.SW + (kw * g.DW) % g.SW, (kh * g.DH) / g.SH,
                      (kw * g.DW) / g.SW, kh * g.KW + kw});
  finish_job(job, std::move(taps));
  return job;
}

// grad_input, input phase (rh, rw): rows ih = rh + SH*j get
//   sum over taps with (rh + PH - kh*DH) % SH == 0 of W[kh] * go[j + (rh + PH - kh*DH)/SH]
// (columns alike): a stride-1 correlation of grad_output, taps shifted by the
// smallest offset. No taps (stride larger than the dilated kernel): zeros.
FlatJob grad_input_job(const GGeo& g, int64_t rh, int64_t rw) {
  FlatJob job;
  job.rows = div_ceil(g.H - rh, g.SH);
  job.cols = div_ceil(g.W - rw, g.SW);
  job.dr0 = rh;
  job.DSH = g.SH;
  job.dc0 = rw;
  job.DSW = g.SW;
  std::vector<int64_t> kh_ok, ch, kw_ok, cw;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t num = rh + g.PH - kh * g.DH;
    if (((num % g.SH) + g.SH) % g.SH == 0) {
      kh_ok.push_back(kh);
      ch.push_back(div_floor(num, g.SH));
    }
  }
  for (int64_t kw = 0; kw < g.KW; ++kw) {
    const int64_t num = rw + g.PW - kw * g.DW;
    if (((num % g.SW) + g.SW) % g.SW == 0) {
      kw_ok.push_back(kw);
      cw.push_back(div_floor(num, g.SW));
    }
  }
  std::vector<Tap> taps;
  if (!kh_ok.empty() && !kw_ok.empty()) {
    const int64_t hmin = *std::min_element(ch.begin(), ch.end());
    const int64_t wmin = *std::min_element(cw.begin(), cw.end());
    job.r_origin = hmin;
    job.c_origin = wmin;
    for (size_t a = 0; a < kh_ok.size(); ++a)
      for (size_t b = 0; b < kw_ok.size(); ++b)
        taps.push_back({0, ch[a] - hmin, cw[b] - wmin, kh_ok[a] * g.KW + kw_ok[b]});
  }
  finish_job(job, std::move(taps));
  return job;
}

// ---------------------------------------------------------------------------
// Planes: pack / results: write
// ---------------------------------------------------------------------------
// Planes of `nch` source channels (from src, channel 0 = the first packed) for the
// output rows [i0, i0 + nrows - maxqh): plane (ch, phase) row i holds source row
// r_origin + (i0 + i)*PSH + a, column j source column c_origin + j*PSW + b, zero
// outside the source; rows [nrows, PP / PLc) and the slack are zero.
template <typename scalar_t, typename acc_t>
void pack_planes(const FlatJob& job, const Plane3<const scalar_t>& src, int64_t nch, int64_t i0,
                 int64_t nrows, acc_t* planes, int64_t PP) {
  constexpr int64_t L = Vec<acc_t>::size();
  using io = IO<scalar_t, acc_t>;
  const int64_t nph = job.nph(), PLc = job.PLc;
  const int64_t sr0 = job.r_origin + i0 * job.PSH;
  // Whole band in one copy per channel: unpadded unit-stride rows, one phase.
  if (nph == 1 && src.sW == 1 && job.c_origin == 0 && src.W == PLc && src.sH == PLc &&
      sr0 >= 0 && sr0 + nrows <= src.H && src.sC != 1) {
    for (int64_t ch = 0; ch < nch; ++ch) {
      acc_t* d = planes + ch * PP;
      convert_in(src.p + ch * src.sC + sr0 * src.sH, 1, d, nrows * PLc);
      std::fill(d + nrows * PLc, d + PP, acc_t(0));
    }
    return;
  }
  for (int64_t a = 0; a < job.PSH; ++a) {
    for (int64_t b = 0; b < job.PSW; ++b) {
      const int64_t phase = a * job.PSW + b;
      const int64_t j_lo = clamp64(div_ceil(-job.c_origin - b, job.PSW), 0, PLc);
      const int64_t j_hi = clamp64(div_ceil(src.W - job.c_origin - b, job.PSW), j_lo, PLc);
      const int64_t sc_lo = job.c_origin + j_lo * job.PSW + b;
      const int64_t cs = job.PSW * src.sW;  // source step between plane columns
      for (int64_t i = 0; i < nrows; ++i) {
        const int64_t sr = sr0 + i * job.PSH + a;
        const bool in_rows = sr >= 0 && sr < src.H;
        const scalar_t* srow = src.p + sr * src.sH + sc_lo * src.sW;
        if (in_rows && src.sC == 1 && nch >= L && j_hi > j_lo) {
          // Channels-last source: L pixels x L channels per in-register transpose; the
          // last block of each kind overlaps the previous one (same values rewritten),
          // rows narrower than L take a partial block (masked stores).
          for (int64_t cb = 0; cb < nch; cb += L) {
            const int64_t ch = std::min(cb, nch - L);
            acc_t* d0 = planes + (ch * nph + phase) * PP + i * PLc;
            for (int64_t jb = j_lo; jb < j_hi; jb += L) {
              const int64_t j = j_hi - j_lo >= L ? std::min(jb, j_hi - L) : jb;
              const int64_t nj = std::min(L, j_hi - j);
              Vec<acc_t> v[L];
              const scalar_t* s = srow + (j - j_lo) * cs + ch;
              for (int64_t k = 0; k < L; ++k) v[k] = k < nj ? io::load(s + k * cs) : Vec<acc_t>(acc_t(0));
              transpose_square<acc_t>(v);
              for (int64_t c = 0; c < L; ++c) {
                if (nj == L) {
                  v[c].store(d0 + c * nph * PP + j);
                } else {
                  v[c].store(d0 + c * nph * PP + j, nj);
                }
              }
            }
            for (int64_t c = 0; c < L; ++c) {
              acc_t* d = d0 + c * nph * PP;
              std::fill(d, d + j_lo, acc_t(0));
              std::fill(d + j_hi, d + PLc, acc_t(0));
            }
          }
          continue;
        }
        for (int64_t ch = 0; ch < nch; ++ch) {
          acc_t* d = planes + (ch * nph + phase) * PP + i * PLc;
          if (!in_rows) {
            std::fill(d, d + PLc, acc_t(0));
            continue;
          }
          std::fill(d, d + j_lo, acc_t(0));
          convert_in(srow + ch * src.sC, cs, d + j_lo, j_hi - j_lo);
          std::fill(d + j_hi, d + PLc, acc_t(0));
        }
      }
      for (int64_t ch = 0; ch < nch; ++ch) {
        acc_t* d = planes + (ch * nph + phase) * PP;
        std::fill(d + nrows * PLc, d + PP, acc_t(0));
      }
    }
  }
}

// Channels-last band of `nch` source channels (src.sC == 1) for the output rows
// [i0, i0 + nrows - maxqh): band row r, column c, channel ch holds source row
// r_origin + i0*PSH + r, column c_origin + c (zero outside the source), rows
// [0, nrows*PSH), columns [0, PLc*PSW), pixels nch wide: the phases stay interleaved
// (a position steps PSW pixels), so pixels are copied whole, no transposes.
template <typename scalar_t, typename acc_t>
void pack_band_cl(const FlatJob& job, const Plane3<const scalar_t>& src, int64_t nch,
                  int64_t i0, int64_t nrows, acc_t* band) {
  const int64_t ncols = job.PLc * job.PSW, pitch = ncols * nch;
  const int64_t c_lo = clamp64(-job.c_origin, 0, ncols);
  const int64_t c_hi = clamp64(src.W - job.c_origin, c_lo, ncols);
  const int64_t sr0 = job.r_origin + i0 * job.PSH;
  for (int64_t r = 0; r < nrows * job.PSH; ++r) {
    acc_t* d = band + r * pitch;
    const int64_t sr = sr0 + r;
    if (sr < 0 || sr >= src.H) {
      std::fill(d, d + pitch, acc_t(0));
      continue;
    }
    std::fill(d, d + c_lo * nch, acc_t(0));
    const scalar_t* s = src.p + sr * src.sH + (job.c_origin + c_lo) * src.sW;
    if (src.sW == nch) {  // the band's channels are the whole pixels
      convert_in(s, 1, d + c_lo * nch, (c_hi - c_lo) * nch);
    } else {
      for (int64_t c = c_lo; c < c_hi; ++c) convert_in(s + (c - c_lo) * src.sW, 1, d + c * nch, nch);
    }
    std::fill(d + c_hi * nch, d + pitch, acc_t(0));
  }
}

// Planar results of `nch` channels (flat rows of pitch PLc, channel stride FL) for
// the job's output rows [i0, i0 + rb) into the destination image (channel 0 = the
// first written), converted to scalar_t.
template <typename scalar_t, typename acc_t>
void write_results(const FlatJob& job, const acc_t* flat, int64_t FL, int64_t nch, int64_t i0,
                   int64_t rb, const Plane3<scalar_t>& dst) {
  constexpr int64_t L = Vec<acc_t>::size();
  using io = IO<scalar_t, acc_t>;
  const int64_t cstep = job.DSW * dst.sW;
  // Whole band in one copy per channel: the flat rows are the destination's rows.
  if (dst.sC != 1 && cstep == 1 && job.DSH == 1 && job.PLc == job.cols &&
      dst.sH == job.cols) {
    for (int64_t ch = 0; ch < nch; ++ch)
      convert_out(flat + ch * FL, dst.p + ch * dst.sC + (job.dr0 + i0) * dst.sH + job.dc0, 1,
                  rb * job.cols);
    return;
  }
  for (int64_t i = 0; i < rb; ++i) {
    const int64_t dr = job.dr0 + (i0 + i) * job.DSH;
    scalar_t* drow = dst.p + dr * dst.sH + job.dc0 * dst.sW;
    const acc_t* frow = flat + i * job.PLc;
    if (dst.sC == 1 && nch >= L) {  // channels-last destination: as pack_planes
      for (int64_t cb = 0; cb < nch; cb += L) {
        const int64_t ch = std::min(cb, nch - L);
        for (int64_t jb = 0; jb < job.cols; jb += L) {
          const int64_t j = job.cols >= L ? std::min(jb, job.cols - L) : jb;
          const int64_t nj = std::min(L, job.cols - j);
          Vec<acc_t> v[L];  // (reads past the row stay inside the flat buffer)
          for (int64_t c = 0; c < L; ++c) v[c] = Vec<acc_t>::loadu(frow + (ch + c) * FL + j);
          transpose_square<acc_t>(v);
          for (int64_t k = 0; k < nj; ++k) io::store(drow + (j + k) * cstep + ch, v[k]);
        }
      }
      continue;
    }
    for (int64_t ch = 0; ch < nch; ++ch)
      convert_out(frow + ch * FL, drow + ch * dst.sC, cstep, job.cols);
  }
}

// ---------------------------------------------------------------------------
// Micro-kernel over positions (planar results):
//   out[m][t0 + u] (u < NR*L) = init[m] + sum_s w[s][m] * src[s][t0 + u]
// ---------------------------------------------------------------------------
template <typename acc_t>
using pos_fn = void (*)(const acc_t* const* src, int64_t nsteps, int64_t t0, const acc_t* w,
                        const acc_t* init, acc_t* out, int64_t ostride);

template <typename acc_t, int MR, int NR>
void pos_block(const acc_t* const* src, int64_t nsteps, int64_t t0, const acc_t* w,
               const acc_t* init, acc_t* out, int64_t ostride) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[MR][NR];
  GCONV_UNROLL
  for (int m = 0; m < MR; ++m) {
    const AV v0(init ? init[m] : acc_t(0));
    GCONV_UNROLL
    for (int v = 0; v < NR; ++v) acc[m][v] = v0;
  }
  for (int64_t s = 0; s < nsteps; ++s) {
    const acc_t* p = src[s] + t0;
    AV x[NR];
    GCONV_UNROLL
    for (int v = 0; v < NR; ++v) x[v] = AV::loadu(p + v * L);
    const acc_t* ws = w + s * MR;
    GCONV_UNROLL
    for (int m = 0; m < MR; ++m) {
      const AV wv(ws[m]);
      GCONV_UNROLL
      for (int v = 0; v < NR; ++v) acc[m][v] = at::vec::fmadd(x[v], wv, acc[m][v]);
    }
  }
  GCONV_UNROLL
  for (int m = 0; m < MR; ++m) {
    GCONV_UNROLL
    for (int v = 0; v < NR; ++v) acc[m][v].store(out + m * ostride + t0 + v * L);
  }
}

template <typename acc_t, int MR, int NR>
pos_fn<acc_t> pick_pos_nr(int nr) {
  if constexpr (NR == 0) {
    return nullptr;
  } else {
    if (nr == NR) return &pos_block<acc_t, MR, NR>;
    return pick_pos_nr<acc_t, MR, NR - 1>(nr);
  }
}

template <typename acc_t, int MR = kMaxMR>
pos_fn<acc_t> pick_pos(int mr, int nr) {
  if constexpr (MR == 0) {
    return nullptr;
  } else {
    if (mr == MR) return pick_pos_nr<acc_t, MR, max_nr(MR)>(std::min(nr, max_nr(MR)));
    return pick_pos<acc_t, MR - 1>(mr, nr);
  }
}

// ---------------------------------------------------------------------------
// Micro-kernel over output channels (channels-last results):
//   out[p][c] (p < P, c < V*L) = init[c] + sum_s src[s][q0 + p] * w[s][c]
// P consecutive flat positions x V vectors of output channels; the input values
// are broadcast from the same planes (consecutive addresses), the weights loaded
// as vectors ([step][V*L], zero past the group's channels).
// ---------------------------------------------------------------------------
constexpr int kMaxV = 4;
constexpr int max_p(int v) {
  // P*V accumulators + V weight vectors + 1 broadcast fit the registers.
  return kVecRegs == 32 ? (v == 1 ? 16 : v == 2 ? 12 : v == 3 ? 8 : 6)
                        : (v == 1 ? 8 : v == 2 ? 5 : v == 3 ? 3 : 2);
}

template <typename acc_t>
using chan_fn = void (*)(const acc_t* const* src, int64_t nsteps, int64_t q0, int64_t xs,
                         const acc_t* w, const acc_t* init, acc_t* out, int64_t ps);

// out[p*ps + v*L ...]: a temporary block, or straight a channels-last destination.
// Position p's input of step s: src[s][q0 + p] (planes), or src[s][q0 + p*xs]
// (Strided: a channels-last band, xs = the column step between positions).
template <typename acc_t, int P, int V, bool Strided>
void chan_block(const acc_t* const* src, int64_t nsteps, int64_t q0, int64_t xs,
                const acc_t* w, const acc_t* init, acc_t* out, int64_t ps) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[P][V];
  GCONV_UNROLL
  for (int v = 0; v < V; ++v) {
    const AV v0 = init ? AV::loadu(init + v * L) : AV(acc_t(0));
    GCONV_UNROLL
    for (int p = 0; p < P; ++p) acc[p][v] = v0;
  }
  for (int64_t s = 0; s < nsteps; ++s) {
    const acc_t* x = src[s] + q0;
    const acc_t* ws = w + s * V * L;
    AV wv[V];
    GCONV_UNROLL
    for (int v = 0; v < V; ++v) wv[v] = AV::loadu(ws + v * L);
    GCONV_UNROLL
    for (int p = 0; p < P; ++p) {
      const AV xb(x[Strided ? p * xs : p]);
      GCONV_UNROLL
      for (int v = 0; v < V; ++v) acc[p][v] = at::vec::fmadd(wv[v], xb, acc[p][v]);
    }
  }
  GCONV_UNROLL
  for (int p = 0; p < P; ++p) {
    GCONV_UNROLL
    for (int v = 0; v < V; ++v) acc[p][v].store(out + p * ps + v * L);
  }
}

template <typename acc_t, int V, int P>
chan_fn<acc_t> pick_chan_p(int p, bool strided) {
  if constexpr (P == 0) {
    return nullptr;
  } else {
    if (p == P) return strided ? &chan_block<acc_t, P, V, true> : &chan_block<acc_t, P, V, false>;
    return pick_chan_p<acc_t, V, P - 1>(p, strided);
  }
}

template <typename acc_t, int V = kMaxV>
chan_fn<acc_t> pick_chan(int v, int p, bool strided) {
  if constexpr (V == 0) {
    return nullptr;
  } else {
    if (v == V) return pick_chan_p<acc_t, V, max_p(V)>(std::min(p, max_p(V)), strided);
    return pick_chan<acc_t, V - 1>(v, p, strided);
  }
}

// ---------------------------------------------------------------------------
// Micro-kernel of the in-place 1x1 path (channels-last, stride 1, no padding):
//   out[p*ps + c] (p < P, c < V*L) = init[c] + sum_s x[p*xs + s] * w[s][c]
// the chan_block product, the inputs broadcast straight from the source pixels (xs =
// the pixel stride) instead of planes; the last vector stores `tail` lanes only (a
// group's channels need not fill it: the next group's start is not overwritten).
// ---------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
using direct_fn = void (*)(const scalar_t* x, int64_t xs, int64_t nsteps, const acc_t* w,
                           const acc_t* init, acc_t* out, int64_t ps, int tail);

template <typename scalar_t, typename acc_t, int P, int V>
void direct_block(const scalar_t* x, int64_t xs, int64_t nsteps, const acc_t* w,
                  const acc_t* init, acc_t* out, int64_t ps, int tail) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[P][V];
  GCONV_UNROLL
  for (int v = 0; v < V; ++v) {
    const AV v0 = init ? AV::loadu(init + v * L) : AV(acc_t(0));
    GCONV_UNROLL
    for (int p = 0; p < P; ++p) acc[p][v] = v0;
  }
  for (int64_t s = 0; s < nsteps; ++s) {
    const scalar_t* xp = x + s;
    const acc_t* ws = w + s * V * L;
    AV wv[V];
    GCONV_UNROLL
    for (int v = 0; v < V; ++v) wv[v] = AV::loadu(ws + v * L);
    GCONV_UNROLL
    for (int p = 0; p < P; ++p) {
      const AV xb(static_cast<acc_t>(xp[p * xs]));
      GCONV_UNROLL
      for (int v = 0; v < V; ++v) acc[p][v] = at::vec::fmadd(wv[v], xb, acc[p][v]);
    }
  }
  GCONV_UNROLL
  for (int p = 0; p < P; ++p) {
    GCONV_UNROLL
    for (int v = 0; v + 1 < V; ++v) acc[p][v].store(out + p * ps + v * L);
    if (tail == L) {
      acc[p][V - 1].store(out + p * ps + (V - 1) * L);
    } else {
      acc[p][V - 1].store(out + p * ps + (V - 1) * L, tail);
    }
  }
}

template <typename scalar_t, typename acc_t, int V, int P>
direct_fn<scalar_t, acc_t> pick_direct_p(int p) {
  if constexpr (P == 0) {
    return nullptr;
  } else {
    if (p == P) return &direct_block<scalar_t, acc_t, P, V>;
    return pick_direct_p<scalar_t, acc_t, V, P - 1>(p);
  }
}

template <typename scalar_t, typename acc_t, int V = kMaxV>
direct_fn<scalar_t, acc_t> pick_direct(int v, int p) {
  if constexpr (V == 0) {
    return nullptr;
  } else {
    if (v == V) return pick_direct_p<scalar_t, acc_t, V, max_p(V)>(std::min(p, max_p(V)));
    return pick_direct<scalar_t, acc_t, V - 1>(v, p);
  }
}

// Output channels of a group split into `n` blocks of at most `max_size` units, as
// equal as possible: all but the last of size `size`.
struct Blocks {
  int64_t n, size;
  int64_t len(int64_t b, int64_t total) const { return std::min(size, total - b * size); }
};
Blocks split(int64_t total, int64_t max_size) {
  const int64_t n = div_ceil(total, max_size);
  return {n, div_ceil(total, n)};
}

// Weights as the micro-kernels read them: element (group, job output channel oc,
// job input channel ic, tap widx) at p[g*s_group + oc*s_oc + ic*s_ic + tap_off[widx]].
template <typename scalar_t>
struct WeightView {
  const scalar_t* p;
  int64_t s_group, s_oc, s_ic;
  std::vector<int64_t> tap_off;
};

template <typename scalar_t>
WeightView<scalar_t> weight_view(const Tensor& weight, int64_t OG, bool transposed) {
  WeightView<scalar_t> v;
  v.p = weight.const_data_ptr<scalar_t>();
  v.s_group = OG * weight.stride(0);
  v.s_oc = transposed ? weight.stride(1) : weight.stride(0);
  v.s_ic = transposed ? weight.stride(0) : weight.stride(1);
  for (int64_t kh = 0; kh < weight.size(2); ++kh)
    for (int64_t kw = 0; kw < weight.size(3); ++kw)
      v.tap_off.push_back(kh * weight.stride(2) + kw * weight.stride(3));
  return v;
}

// Results [p][c] (row stride rs) of np positions x nc channels to the destination:
// position p, channel c at d[p*ps + c*cs]. Channels-last (cs == 1): vector stores per
// position; otherwise L x L transposes, one (masked) row store per channel.
template <typename scalar_t, typename acc_t>
void store_channel_block(const acc_t* r, int64_t rs, int64_t np, int64_t nc, scalar_t* d,
                         int64_t cs, int64_t ps) {
  constexpr int64_t L = Vec<acc_t>::size();
  using io = IO<scalar_t, acc_t>;
  if (cs == 1) {
    for (int64_t p = 0; p < np; ++p) {
      int64_t c = 0;
      for (; c + L <= nc; c += L) io::store(d + p * ps + c, Vec<acc_t>::loadu(r + p * rs + c));
      for (; c < nc; ++c) d[p * ps + c] = static_cast<scalar_t>(r[p * rs + c]);
    }
    return;
  }
  for (int64_t p0 = 0; p0 < np; p0 += L) {
    const int64_t npp = std::min(L, np - p0);
    for (int64_t c0 = 0; c0 < nc; c0 += L) {
      const int64_t ncc = std::min(L, nc - c0);
      Vec<acc_t> v[L];  // rows of r are whole vectors (rs is a multiple of L)
      for (int64_t p = 0; p < L; ++p)
        v[p] = p < npp ? Vec<acc_t>::loadu(r + (p0 + p) * rs + c0) : Vec<acc_t>(acc_t(0));
      transpose_square<acc_t>(v);
      for (int64_t c = 0; c < ncc; ++c) {
        scalar_t* dc = d + (c0 + c) * cs + p0 * ps;
        if (ps == 1 && npp == L) {
          io::store(dc, v[c]);
        } else {
          __at_align__ acc_t lanes[L];
          v[c].store(lanes);
          for (int64_t p = 0; p < npp; ++p) dc[p * ps] = static_cast<scalar_t>(lanes[p]);
        }
      }
    }
  }
}

// One output block's weights as the micro-kernels read them: wb[k*width + c] =
// weight row c (channel c0 + c of the group; zero from `rows` on) at step k. Rows are
// read at wr + c*s_oc + koff[k]; with unit steps (koff[k] == k: contiguous weights,
// taps in order) L x L blocks go through in-register transposes.
template <typename scalar_t, typename acc_t>
void pack_weight_block(const scalar_t* wr, int64_t s_oc, const std::vector<int64_t>& koff,
                       bool unit, int64_t width, int64_t rows, acc_t* wb) {
  constexpr int64_t L = Vec<acc_t>::size();
  using io = IO<scalar_t, acc_t>;
  const int64_t K = static_cast<int64_t>(koff.size());
  int64_t k_done = 0;
  if (unit && K >= L) {
    k_done = (K / L) * L;
    for (int64_t c0 = 0; c0 < width; c0 += L) {
      const int64_t nc = std::min(L, width - c0);
      for (int64_t k0 = 0; k0 < k_done; k0 += L) {
        Vec<acc_t> v[L];
        for (int64_t c = 0; c < L; ++c)
          v[c] = c < nc && c0 + c < rows ? io::load(wr + (c0 + c) * s_oc + k0) : Vec<acc_t>(acc_t(0));
        transpose_square<acc_t>(v);
        for (int64_t k = 0; k < L; ++k) {
          if (nc == L) {
            v[k].store(wb + (k0 + k) * width + c0);
          } else {
            v[k].store(wb + (k0 + k) * width + c0, nc);
          }
        }
      }
    }
  }
  for (int64_t c = 0; c < width; ++c) {
    const scalar_t* w = wr + c * s_oc;
    for (int64_t k = k_done; k < K; ++k)
      wb[k * width + c] = c < rows ? static_cast<acc_t>(w[koff[k]]) : acc_t(0);
  }
}

// Channels-last 1x1, stride 1, no padding, source and destination pixels in one
// uniform stride over the whole batch (sp, dp): per group a GEMM [pixels x CinJ] x
// [CinJ x OGJ] read and written in place, no planes (packing them would cost as much as
// the few FMAs per input value of a grouped 1x1). Tasks are (pixel chunk, block of
// groups); inside one, group by group over the chunk, so a group's weights are re-read
// from L1 and the chunk's pixels (all groups' channels) stay in L2.
template <typename scalar_t>
void direct_conv(const scalar_t* src, int64_t sp, scalar_t* dst, int64_t dp, int64_t npix,
                 int64_t G, int64_t CinJ, int64_t OGJ, const at::opmath_type<scalar_t>* bias,
                 const WeightView<scalar_t>& wv, const std::vector<int64_t>& koff, bool unit) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = Vec<acc_t>::size();
  const int64_t K = CinJ;
  const int64_t nvec = div_ceil(OGJ, L);
  // Blocks of at most kDirectV vectors: the most FMAs per step in the registers (32: 4 x 6,
  // 3 x 8, 2 x 12 are all 24; 16: 2 x 5 = 10 beats 3 x 3 and 4 x 2).
  constexpr int kDirectV = kVecRegs == 32 ? kMaxV : 2;
  const Blocks ob = split(nvec, kDirectV);
  const int64_t ob_width = ob.size * L;
  const int64_t wg_size = ob.n * ob_width * K;
  // All groups' weights, packed once for every task ([group][block][step][lanes]).
  std::vector<acc_t> wpk(G * wg_size);
  at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t grp = g0; grp < g1; ++grp)
      for (int64_t b = 0; b < ob.n; ++b) {
        const int64_t c0 = b * ob_width;
        pack_weight_block<scalar_t, acc_t>(wv.p + grp * wv.s_group + c0 * wv.s_oc, wv.s_oc, koff,
                                           unit, ob.len(b, nvec) * L, OGJ - c0,
                                           wpk.data() + grp * wg_size + c0 * K);
      }
  });
  std::vector<acc_t> bias_blocks;
  if (bias) {
    bias_blocks.assign(G * ob.n * ob_width, acc_t(0));
    for (int64_t grp = 0; grp < G; ++grp)
      for (int64_t c = 0; c < OGJ; ++c) bias_blocks[grp * ob.n * ob_width + c] = bias[grp * OGJ + c];
  }
  // Chunk: its pixels' channels of the task's groups (source + destination) in ~L2/2;
  // fewer groups per task where that leaves under 64 pixels; then enough tasks.
  constexpr int64_t kChunkBytes = 256 * 1024;
  auto chunk_of = [&](int64_t groups) {
    return clamp64(kChunkBytes / (groups * (CinJ + OGJ) * int64_t(sizeof(acc_t))), 16, npix);
  };
  int64_t gb = G;
  while (gb > 1 && chunk_of(gb) < std::min<int64_t>(64, npix)) gb = div_ceil(gb, 2);
  const int64_t ngb = div_ceil(G, gb);
  int64_t M = chunk_of(gb);
  const int64_t want_tasks = 4 * at::get_num_threads();
  if (ngb * div_ceil(npix, M) < want_tasks)
    M = std::max<int64_t>(16, div_ceil(npix, div_ceil(want_tasks, ngb)));
  const int64_t pmax = max_p(static_cast<int>(ob.size));
  M = std::min(round_up(M, pmax), npix);  // whole register blocks but the last
  const int64_t nchunks = div_ceil(npix, M);

  at::parallel_for(0, nchunks * ngb, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> results(std::is_same_v<scalar_t, acc_t> ? 0 : max_p(1) * ob_width);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t pix0 = (task / ngb) * M, npx = std::min(M, npix - pix0);
      const int64_t g0 = (task % ngb) * gb, g1 = std::min(G, g0 + gb);
      for (int64_t grp = g0; grp < g1; ++grp) {
        for (int64_t b = 0; b < ob.n; ++b) {
          const int64_t nv = ob.len(b, nvec), c0 = b * ob_width;
          const int64_t nc = std::min(nv * L, OGJ - c0);  // real channels of the block
          const acc_t* w = wpk.data() + grp * wg_size + c0 * K;
          const acc_t* init = bias ? bias_blocks.data() + grp * ob.n * ob_width + c0 : nullptr;
          const int tail = static_cast<int>(nc - (nv - 1) * L);
          for (int64_t q = pix0; q < pix0 + npx; q += pmax) {
            const int np = static_cast<int>(std::min(pmax, pix0 + npx - q));
            const auto fn = pick_direct<scalar_t, acc_t>(static_cast<int>(nv), np);
            const scalar_t* x = src + q * sp + grp * CinJ;
            scalar_t* d = dst + q * dp + grp * OGJ + c0;
            if constexpr (std::is_same_v<scalar_t, acc_t>) {
              fn(x, sp, K, w, init, d, dp, tail);
            } else {
              fn(x, sp, K, w, init, results.data(), nv * L, static_cast<int>(L));
              store_channel_block<scalar_t, acc_t>(results.data(), nv * L, np, nc, d, 1, dp);
            }
          }
        }
      }
    }
  });
}

// Runs `job` for every image and group: dst(n, g*OGJ + oc) = sum over the group's
// CinJ source channels and the taps of weight(g, oc, ic, tap) * planes, + bias.
template <typename scalar_t>
void flat_conv(const FlatJob& job, const scalar_t* src_base, const Tensor& src_t,
               scalar_t* dst_base, const Tensor& dst_t, int64_t N, int64_t G, int64_t CinJ,
               int64_t OGJ, const at::opmath_type<scalar_t>* bias,
               const WeightView<scalar_t>& wv) {
  using acc_t = at::opmath_type<scalar_t>;
  using io = IO<scalar_t, acc_t>;
  constexpr int64_t L = Vec<acc_t>::size();
  if (job.rows <= 0 || job.cols <= 0) return;
  const int64_t T = static_cast<int64_t>(job.taps.size());
  const int64_t K = CinJ * T;
  const int64_t nph = job.nph(), PLc = job.PLc;
  std::vector<int64_t> koff(K);  // weight offset of step ic*T + tap
  bool unit = true;
  for (int64_t ic = 0; ic < CinJ; ++ic)
    for (int64_t tp = 0; tp < T; ++tp) {
      koff[ic * T + tp] = ic * wv.s_ic + wv.tap_off[job.taps[tp].widx];
      unit = unit && koff[ic * T + tp] == ic * T + tp;
    }

  const bool src_cl = src_t.stride(1) == 1, dst_cl = dst_t.stride(1) == 1;
  // Test / benchmark hook: PYTORCH_NATIVE_GCONV_ENGINE=planar|channel|direct forces an engine
  // (direct where the conv allows it, else the automatic choice).
  const char* engine = std::getenv("PYTORCH_NATIVE_GCONV_ENGINE");
  const bool forced = engine && (std::strcmp(engine, "planar") == 0 ||
                                 std::strcmp(engine, "channel") == 0);
  // In-place 1x1: one tap at offset 0 (1x1, stride 1, no padding: the job's map is the
  // source's and the destination's), every pixel of the batch at one stride on both
  // sides (channels-last, densely laid out), group outputs mostly filling their vectors.
  auto flat_pixels = [](const Tensor& t) {
    return t.stride(1) == 1 && t.stride(2) == t.size(3) * t.stride(3) &&
           (t.size(0) == 1 || t.stride(0) == t.size(2) * t.stride(2));
  };
  const bool direct_ok = nph == 1 && T == 1 && job.off(job.taps[0]) == 0 && job.r_origin == 0 &&
                         job.c_origin == 0 && job.dr0 == 0 && job.dc0 == 0 && job.DSH == 1 &&
                         job.DSW == 1 && job.rows == src_t.size(2) &&
                         job.cols == src_t.size(3) && job.rows == dst_t.size(2) &&
                         job.cols == dst_t.size(3) && flat_pixels(src_t) && flat_pixels(dst_t);
  const bool direct = direct_ok && !forced &&
                      ((engine && std::strcmp(engine, "direct") == 0) ||
                       5 * OGJ >= 3 * round_up(OGJ, L));
  if (direct) {
    direct_conv<scalar_t>(src_base, src_t.stride(3), dst_base, dst_t.stride(3),
                          N * job.rows * job.cols, G, CinJ, OGJ, bias, wv, koff, unit);
    return;
  }
  // Results straight from the channel-vector micro-kernel (output channels in the
  // lanes, output rows walked without the dropped columns) when the group's output
  // channels fill whole vectors, mostly, and a block's weights stay in L1 (they are
  // re-read for every few positions), and the output is channels-last (else its
  // planar results would need transposes) or its rows are short (the dropped columns
  // would cost more than the scalar stores). Else planar results (positions in the
  // lanes, few loads per FMA), transposed on the way out for channels-last.
  // Vectors per channel block: its weights ([step][block channels]) within ~20 KB of L1
  // beside the planes; with 16 registers at most 2 (P = 5 positions reuse each weight
  // load; 4 vectors leave room for 2 positions only).
  const int64_t chan_vmax = clamp64(
      (20 * 1024) / std::max<int64_t>(1, K * L * int64_t(sizeof(acc_t))), 1,
      kVecRegs == 32 ? kMaxV : 2);
  bool by_channel = OGJ >= L && 4 * OGJ >= 3 * round_up(OGJ, L) &&
                    K * std::min(round_up(OGJ, L), chan_vmax * L) * int64_t(sizeof(acc_t)) <=
                        40 * 1024 &&
                    (job.cols <= 16 || (dst_cl && (OGJ > L || src_cl)));
  if (engine) {
    if (std::strcmp(engine, "planar") == 0) by_channel = false;
    if (std::strcmp(engine, "channel") == 0) by_channel = true;
  }
  // A channels-last source for the channel engine stays channels-last: pixels copied
  // whole into a padded band (pack_band_cl), no transposes (they cost as much as the
  // FMAs of a stride-2 conv's 4 input pixels per output).
  const bool cl_band = by_channel && src_cl;
  const Blocks ob = by_channel ? split(div_ceil(OGJ, L), chan_vmax) : split(OGJ, kMaxMR);
  const int64_t ob_width = by_channel ? ob.size * L : ob.size;  // channels per block
  const int64_t wg_size = by_channel ? ob.n * ob_width * K : OGJ * K;  // per group
  // Groups per task: at least L channels where a side is transposed; for channels-last
  // sides as many groups as the band budget allows with bands of >= 4 rows, so pixels
  // are read and written whole, in order (not a group's slice of every pixel).
  int64_t gb_min = 1;
  if (src_cl && !cl_band) gb_min = std::max(gb_min, div_ceil(L, CinJ));
  if (dst_cl && !by_channel) gb_min = std::max(gb_min, div_ceil(L, OGJ));
  gb_min = std::min(gb_min, G);
  auto band_rows = [&](int64_t groups) {  // planes + results of a band within kBandBytes
    const int64_t row_bytes = (groups * CinJ * nph + (by_channel ? 0 : groups * OGJ)) * PLc *
                              int64_t(sizeof(acc_t));
    return clamp64(kBandBytes / std::max<int64_t>(1, row_bytes) - job.maxqh, 1, job.rows);
  };
  int64_t gb = gb_min;
  if (src_cl || dst_cl) {
    gb = G;
    while (gb > gb_min && band_rows(gb) < std::min<int64_t>(job.rows, 4))
      gb = std::max(gb_min, gb / 2);
  }
  // Enough tasks for the threads: thinner bands first, then fewer groups per task; but
  // no bands so thin that the rows their taps overlap (maxqh) add over a third to the
  // packing (small maps: fewer groups per task instead).
  const int64_t want_tasks = 4 * at::get_num_threads();
  int64_t RB = band_rows(gb);
  for (;;) {
    const int64_t ngb = div_ceil(G, gb);
    RB = band_rows(gb);
    if (N * ngb * div_ceil(job.rows, RB) >= want_tasks) break;
    const int64_t bands = div_ceil(want_tasks, N * ngb);
    const bool thick = bands <= job.rows && div_ceil(job.rows, bands) >= 3 * job.maxqh;
    if (thick || gb == gb_min) {
      RB = div_ceil(job.rows, std::min(bands, job.rows));
      break;
    }
    gb = std::max(gb_min, gb / 2);
  }
  const int64_t ngb = div_ceil(G, gb);
  const int64_t nbands = div_ceil(job.rows, RB);
  const int64_t PP = (RB + job.maxqh + 1) * PLc + L;
  const int64_t FL = round_up(RB * PLc, L);
  const int64_t ntasks = ngb * N * nbands;
  // by_channel: bias padded to whole vectors per block.
  std::vector<acc_t> bias_blocks;
  if (by_channel && bias) {
    bias_blocks.assign(G * ob.n * ob_width, acc_t(0));
    for (int64_t grp = 0; grp < G; ++grp)
      for (int64_t c = 0; c < OGJ; ++c) bias_blocks[grp * ob.n * ob_width + c] = bias[grp * OGJ + c];
  }

  at::parallel_for(0, ntasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> planes(cl_band ? (RB + job.maxqh) * nph * PLc * gb * CinJ
                                      : gb * CinJ * nph * PP);
    std::vector<acc_t> results(by_channel ? max_p(1) * ob_width : gb * OGJ * FL);
    std::vector<acc_t> wpk(gb * wg_size);
    std::vector<const acc_t*> ptrs(std::max<int64_t>(gb * K, 1));
    int64_t packed_gblock = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t gbi = task / (N * nbands);
      const int64_t n = (task / nbands) % N;
      const int64_t band = task % nbands;
      const int64_t g0 = gbi * gb, gn = std::min(gb, G - g0);
      const int64_t i0 = band * RB, rb = std::min(RB, job.rows - i0);
      if (gbi != packed_gblock) {
        // Weights of the task's groups, per group and output block: [step][block channels].
        packed_gblock = gbi;
        for (int64_t gl = 0; gl < gn; ++gl) {
          const scalar_t* wg = wv.p + (g0 + gl) * wv.s_group;
          for (int64_t b = 0; b < ob.n; ++b) {
            const int64_t c0 = b * ob_width;
            const int64_t width = by_channel ? ob.len(b, div_ceil(OGJ, L)) * L : ob.len(b, OGJ);
            pack_weight_block<scalar_t, acc_t>(wg + c0 * wv.s_oc, wv.s_oc, koff, unit, width,
                                               OGJ - c0, wpk.data() + gl * wg_size + c0 * K);
          }
        }
      }
      auto src = image_of(src_base, src_t, n);
      src.p += g0 * CinJ * src.sC;
      const int64_t pix = gn * CinJ, pitch = PLc * job.PSW * pix;  // channels-last band
      if (cl_band) {
        pack_band_cl<scalar_t, acc_t>(job, src, pix, i0, rb + job.maxqh, planes.data());
      } else {
        pack_planes<scalar_t, acc_t>(job, src, pix, i0, rb + job.maxqh, planes.data(), PP);
      }
      const int64_t nt = rb * PLc;
      auto dst = image_of(dst_base, dst_t, n);
      for (int64_t gl = 0; gl < gn; ++gl)
        for (int64_t ic = 0; ic < CinJ; ++ic)
          for (int64_t tp = 0; tp < T; ++tp) {
            const Tap& tap = job.taps[tp];
            ptrs[(gl * CinJ + ic) * T + tp] =
                cl_band ? planes.data() + (tap.qh * job.PSH + tap.phase / job.PSW) * pitch +
                              (tap.qw * job.PSW + tap.phase % job.PSW) * pix + gl * CinJ + ic
                        : planes.data() + ((gl * CinJ + ic) * nph + tap.phase) * PP + job.off(tap);
          }
      if (by_channel) {
        // Row by row, a few positions at a time, all the task's groups: the results of
        // consecutive groups are neighbours in a channels-last destination.
        const int64_t nvec = div_ceil(OGJ, L);
        const int64_t chunk = max_p(static_cast<int>(ob.size));
        for (int64_t i = 0; i < rb; ++i) {
          scalar_t* drow = dst.p + (job.dr0 + (i0 + i) * job.DSH) * dst.sH;
          for (int64_t j0 = 0; j0 < job.cols; j0 += chunk) {
            const int np = static_cast<int>(std::min(chunk, job.cols - j0));
            // First position's offset in the planes / band, and the step between positions.
            const int64_t q0 = cl_band ? i * job.PSH * pitch + j0 * job.PSW * pix : i * PLc + j0;
            const int64_t xs = cl_band ? job.PSW * pix : 1;
            for (int64_t gl = 0; gl < gn; ++gl) {
              for (int64_t b = 0; b < ob.n; ++b) {
                const int64_t nv = ob.len(b, nvec), c0 = b * ob_width;
                const int64_t nc = std::min(nv * L, OGJ - c0);  // real channels of the block
                const acc_t* init =
                    bias ? bias_blocks.data() + (g0 + gl) * ob.n * ob_width + c0 : nullptr;
                const chan_fn<acc_t> fn = pick_chan<acc_t>(static_cast<int>(nv), np, cl_band);
                const acc_t* w = wpk.data() + gl * wg_size + c0 * K;
                scalar_t* d = drow + ((g0 + gl) * OGJ + c0) * dst.sC +
                              (job.dc0 + j0 * job.DSW) * dst.sW;
                if constexpr (std::is_same_v<scalar_t, acc_t>) {
                  if (dst.sC == 1 && nc == nv * L) {  // whole vectors: straight to the output
                    fn(ptrs.data() + gl * K, K, q0, xs, w, init, d, job.DSW * dst.sW);
                    continue;
                  }
                }
                fn(ptrs.data() + gl * K, K, q0, xs, w, init, results.data(), nv * L);
                store_channel_block<scalar_t, acc_t>(results.data(), nv * L, np, nc, d, dst.sC,
                                                     job.DSW * dst.sW);
              }
            }
          }
        }
        continue;
      }
      for (int64_t gl = 0; gl < gn; ++gl) {
        const acc_t* wg = wpk.data() + gl * wg_size;
        const int nr_main = max_nr(static_cast<int>(ob.size));
        for (int64_t t0 = 0; t0 < nt; t0 += nr_main * L) {
          const int nr = static_cast<int>(std::min<int64_t>(nr_main, div_ceil(nt - t0, L)));
          for (int64_t b = 0; b < ob.n; ++b) {
            const int64_t c0 = b * ob.size;
            pick_pos<acc_t>(static_cast<int>(ob.len(b, OGJ)), nr)(
                ptrs.data() + gl * K, K, t0, wg + c0 * K,
                bias ? bias + (g0 + gl) * OGJ + c0 : nullptr,
                results.data() + (gl * OGJ + c0) * FL, FL);
          }
        }
      }
      if (!by_channel) {
        dst.p += g0 * OGJ * dst.sC;
        write_results<scalar_t, acc_t>(job, results.data(), FL, gn * OGJ, i0, rb, dst);
      }
    }
  });
}

template <typename scalar_t>
void native_grouped_forward(const Tensor& output, const Tensor& input, const Tensor& weight,
                            const Tensor& bias, const GGeo& g) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> bias_acc;
  if (bias.defined()) {
    const scalar_t* b = bias.const_data_ptr<scalar_t>();
    const int64_t bs = bias.numel() > 1 ? bias.stride(0) : 0;
    for (int64_t o = 0; o < g.OC; ++o) bias_acc.push_back(static_cast<acc_t>(b[o * bs]));
  }
  flat_conv<scalar_t>(forward_job(g), input.const_data_ptr<scalar_t>(), input,
                      output.mutable_data_ptr<scalar_t>(), output, g.N, g.G, g.CG, g.OG,
                      bias.defined() ? bias_acc.data() : nullptr,
                      weight_view<scalar_t>(weight, g.OG, /*transposed=*/false));
}

void native_grouped_conv2d_forward_kernel(
    const Tensor& output, const Tensor& input, const Tensor& weight, const Tensor& bias,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const GGeo g = make_geo(input, weight, stride, padding, dilation, groups);
  if (g.N == 0 || output.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "native_grouped_conv2d_forward", [&] {
    native_grouped_forward<scalar_t>(output, input, weight, bias, g);
  });
}

// ---------------------------------------------------------------------------
// grad_input: the flat engine on grad_output, one job per input stride phase.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void grad_input_flat(const GGeo& g, const Tensor& grad_input, const Tensor& grad_output,
                     const Tensor& weight) {
  // Job output channel = input channel ic of the group, job input = output channel oc.
  const auto wv = weight_view<scalar_t>(weight, g.OG, /*transposed=*/true);
  for (int64_t rh = 0; rh < std::min(g.SH, g.H); ++rh) {
    for (int64_t rw = 0; rw < std::min(g.SW, g.W); ++rw) {
      flat_conv<scalar_t>(grad_input_job(g, rh, rw), grad_output.const_data_ptr<scalar_t>(),
                          grad_output, grad_input.mutable_data_ptr<scalar_t>(), grad_input, g.N,
                          g.G, g.OG, g.CG, nullptr, wv);
    }
  }
}
// ---------------------------------------------------------------------------
// grad_weight: sums[m][r] += sum_t go[m][t] * x[r][t] over the flat band.
// ---------------------------------------------------------------------------
template <typename acc_t>
using gw_fn = void (*)(const acc_t* const* go, const acc_t* const* x, int64_t nvec, acc_t* sums,
                       int64_t sstride);

template <typename acc_t, int MR, int RR>
void gw_block(const acc_t* const* go, const acc_t* const* x, int64_t nvec, acc_t* sums,
              int64_t sstride) {
  using AV = Vec<acc_t>;
  constexpr int64_t L = AV::size();
  AV acc[MR][RR];
  GCONV_UNROLL
  for (int m = 0; m < MR; ++m) {
    GCONV_UNROLL
    for (int r = 0; r < RR; ++r) acc[m][r] = AV(acc_t(0));
  }
  for (int64_t t = 0; t < nvec * L; t += L) {
    AV gv[MR];
    GCONV_UNROLL
    for (int m = 0; m < MR; ++m) gv[m] = AV::loadu(go[m] + t);
    GCONV_UNROLL
    for (int r = 0; r < RR; ++r) {
      const AV xv = AV::loadu(x[r] + t);
      GCONV_UNROLL
      for (int m = 0; m < MR; ++m) acc[m][r] = at::vec::fmadd(gv[m], xv, acc[m][r]);
    }
  }
  GCONV_UNROLL
  for (int m = 0; m < MR; ++m) {
    GCONV_UNROLL
    for (int r = 0; r < RR; ++r) {
      __at_align__ acc_t lanes[L];
      acc[m][r].store(lanes);
      acc_t s = 0;
      for (int64_t i = 0; i < L; ++i) s += lanes[i];
      sums[m * sstride + r] += s;
    }
  }
}

template <typename acc_t, int MR, int RR>
gw_fn<acc_t> pick_gw_rr(int rr) {
  if constexpr (RR == 0) {
    return nullptr;
  } else {
    if (rr == RR) return &gw_block<acc_t, MR, RR>;
    return pick_gw_rr<acc_t, MR, RR - 1>(rr);
  }
}

template <typename acc_t, int MR = kMRW>
gw_fn<acc_t> pick_gw(int mr, int rr) {
  if constexpr (MR == 0) {
    return nullptr;
  } else {
    if (mr == MR) return pick_gw_rr<acc_t, MR, kRRW>(rr);
    return pick_gw<acc_t, MR - 1>(mr, rr);
  }
}

template <typename scalar_t>
void grad_weight_flat(const GGeo& g, const Tensor& grad_weight, const Tensor& grad_output,
                      const Tensor& input) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = Vec<acc_t>::size();
  const FlatJob job = forward_job(g);
  // grad_output as flat rows of the same pitch (zero in the dropped columns).
  FlatJob go_job;
  go_job.rows = g.OH;
  go_job.cols = g.OW;
  go_job.PLc = job.PLc;
  const int64_t T = static_cast<int64_t>(job.taps.size());
  const int64_t nph = job.nph(), PLc = job.PLc;
  // Tasks own (group, block of input channels): no two tasks write the same weights.
  const int64_t want_tasks = 4 * at::get_num_threads();
  const int64_t nicb = clamp64(div_ceil(want_tasks, g.G), 1, g.CG);
  const int64_t icn = div_ceil(g.CG, nicb);
  // (bands sized for all CG channels, not icn: the summation order must not depend on
  // the thread count)
  const int64_t row_bytes = (g.CG * nph + g.OG) * PLc * int64_t(sizeof(acc_t));
  const int64_t RB = clamp64(kBandBytes / std::max<int64_t>(1, row_bytes) - job.maxqh, 1, g.OH);
  const int64_t nbands = div_ceil(g.OH, RB);
  const int64_t PP = (RB + job.maxqh + 1) * PLc + L;
  const int64_t FL = round_up(RB * PLc, L) + L;
  scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();  // contiguous [OC][CG][KH][KW]
  const int64_t K = g.KH * g.KW;
  const scalar_t* in_base = input.const_data_ptr<scalar_t>();
  const scalar_t* go_base = grad_output.const_data_ptr<scalar_t>();

  at::parallel_for(0, g.G * nicb, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> planes(icn * nph * PP);
    std::vector<acc_t> goflat(g.OG * FL);
    std::vector<acc_t> sums(g.OG * icn * T);
    std::vector<const acc_t*> gop(g.OG), xp(icn * T);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t grp = task / nicb;
      const int64_t ic0 = (task % nicb) * icn;
      const int64_t icc = std::min(icn, g.CG - ic0);
      if (icc <= 0) continue;
      const int64_t S = icc * T;
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int64_t oc = 0; oc < g.OG; ++oc) gop[oc] = goflat.data() + oc * FL;
      for (int64_t ic = 0; ic < icc; ++ic)
        for (int64_t tp = 0; tp < T; ++tp)
          xp[ic * T + tp] =
              planes.data() + (ic * nph + job.taps[tp].phase) * PP + job.off(job.taps[tp]);
      for (int64_t n = 0; n < g.N; ++n) {
        auto src = image_of(in_base, input, n);
        src.p += (grp * g.CG + ic0) * src.sC;
        auto gsrc = image_of(go_base, grad_output, n);
        gsrc.p += grp * g.OG * gsrc.sC;
        for (int64_t band = 0; band < nbands; ++band) {
          const int64_t i0 = band * RB, rb = std::min(RB, g.OH - i0);
          pack_planes<scalar_t, acc_t>(job, src, icc, i0, rb + job.maxqh, planes.data(), PP);
          pack_planes<scalar_t, acc_t>(go_job, gsrc, g.OG, i0, rb, goflat.data(), FL);
          const int64_t nvec = div_ceil(rb * PLc, L);
          for (int64_t m0 = 0; m0 < g.OG; m0 += kMRW) {
            const int mr = static_cast<int>(std::min<int64_t>(kMRW, g.OG - m0));
            for (int64_t r0 = 0; r0 < S; r0 += kRRW) {
              const int rr = static_cast<int>(std::min<int64_t>(kRRW, S - r0));
              pick_gw<acc_t>(mr, rr)(gop.data() + m0, xp.data() + r0, nvec,
                                     sums.data() + m0 * S + r0, S);
            }
          }
        }
      }
      for (int64_t oc = 0; oc < g.OG; ++oc)
        for (int64_t ic = 0; ic < icc; ++ic)
          for (int64_t tp = 0; tp < T; ++tp)
            gw[((grp * g.OG + oc) * g.CG + ic0 + ic) * K + job.taps[tp].widx] =
                static_cast<scalar_t>(sums[oc * S + ic * T + tp]);
    }
  });
}

std::tuple<Tensor, Tensor> native_grouped_conv2d_backward_kernel(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight, IntArrayRef stride,
    IntArrayRef padding, IntArrayRef dilation, int64_t groups, std::array<bool, 2> output_mask) {
  const GGeo g = make_geo(input, weight, stride, padding, dilation, groups);
  Tensor grad_input, grad_weight;
  if (output_mask[0]) {
    grad_input = at::empty(input.sizes(),
                           input.options().memory_format(input.suggest_memory_format()));
  }
  if (output_mask[1]) {
    grad_weight = at::empty(weight.sizes(),
                            weight.options().memory_format(at::MemoryFormat::Contiguous));
  }
  if (g.N == 0) {
    if (grad_weight.defined()) grad_weight.zero_();
    return std::make_tuple(grad_input, grad_weight);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "native_grouped_conv2d_backward", [&] {
    if (grad_input.defined()) grad_input_flat<scalar_t>(g, grad_input, grad_output, weight);
    if (grad_weight.defined()) grad_weight_flat<scalar_t>(g, grad_weight, grad_output, input);
  });
  // grad_weight in the input's memory format, as stock convolution_backward returns it (and as
  // _determine_backend_memory_format predicts); computed contiguous, converted once (small).
  if (grad_weight.defined() && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    grad_weight = grad_weight.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return std::make_tuple(grad_input, grad_weight);
}

}  // namespace

// REGISTER_DISPATCH leaves the AVX512 slot empty in PyTorch (AVX2 is used instead);
// this kernel's register blocking is made for 32 vector registers, so it registers
// that slot too (as DepthwiseConvKernel.cpp does).
ALSO_REGISTER_AVX512_DISPATCH(native_grouped_conv2d_forward_stub, &native_grouped_conv2d_forward_kernel)
ALSO_REGISTER_AVX512_DISPATCH(native_grouped_conv2d_backward_stub, &native_grouped_conv2d_backward_kernel)

}  // namespace at::native
