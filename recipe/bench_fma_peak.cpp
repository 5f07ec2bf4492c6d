// The fp32 FMA peak of this machine, for `python build.py bench` (recipe/bench.py compiles
// it with the flags of the CPU capability the kernels run with, caches and runs it).
//
// Each of THREADS threads runs 12 independent chains of vector FMAs on registers only (no
// loads, no stores): 12 chains cover the FMA latency x pipes of every core we target
// (Zen 1: 5 cycles x 1 ymm per cycle; Carmel/Orin/Thor NEON: 4 x 2..4), so nothing but the FMA
// pipes limits them, and no convolution, whatever it does with memory, can run faster.
//
//   bench_fma_peak THREADS SECONDS   ->  prints "<GFLOP/s>" (2 flops per lane per FMA)
//
// Without FMA instructions (x86 DEFAULT = SSE2) each step is a multiply and an add, which is
// then that capability's peak: the kernels compiled for it have no FMA either.
//
// VECTOR_BYTES (compile-time) is the kernels' vector width for that capability: 64 AVX-512,
// 32 AVX2, 16 NEON / SSE. The best of 5 timed rounds after one warm-up round is printed: a
// ceiling, so the best round, not the median.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#ifndef VECTOR_BYTES
#define VECTOR_BYTES 16
#endif

// A vector register operand, for the empty asm below.
#if defined(__x86_64__) || defined(__i386__)
#define VECTOR_REGISTER "+x"
#elif defined(__aarch64__) || defined(__arm__)
#define VECTOR_REGISTER "+w"
#else
#error "bench_fma_peak: x86 or ARM only"
#endif

typedef float vec __attribute__((vector_size(VECTOR_BYTES)));
static const int kLanes = VECTOR_BYTES / sizeof(float);
static const int kChains = 12;

static vec splat(float v) {
  vec r;
  for (int l = 0; l < kLanes; ++l) r[l] = v;
  return r;
}

static float fma_chains(long iterations, float seed) {
  // a += a * m: the accumulating form every FMA instruction has (x86 vfmadd231ps, NEON fmla:
  // no register copies), and a depends on itself, so nothing is loop-invariant. a * m is below
  // half an ulp of a: a never changes, never overflows and never becomes a denormal.
  const vec m = splat(1e-9f);
  // Twelve named accumulators, not an array: an array GCC keeps in memory (store-to-load
  // latency per step), named vectors stay in registers.
  vec a0 = splat(seed), a1 = splat(seed + 1), a2 = splat(seed + 2), a3 = splat(seed + 3),
      a4 = splat(seed + 4), a5 = splat(seed + 5), a6 = splat(seed + 6), a7 = splat(seed + 7),
      a8 = splat(seed + 8), a9 = splat(seed + 9), a10 = splat(seed + 10), a11 = splat(seed + 11);
  // The empty asm makes each chain opaque per step: the compiler can neither fold nor skip it.
#define STEP(a) a = a + a * m; asm volatile("" : VECTOR_REGISTER(a));  // fused: -ffp-contract=fast
  for (long k = 0; k < iterations; ++k) {
    STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5)
    STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)
  }
#undef STEP
  vec s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
  float sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += s[l];
  return sum;
}

// GFLOP/s of `threads` threads running `iterations` steps each (wall time, all together).
static double round_gflops(int threads, long iterations) {
  std::vector<std::thread> pool;
  std::atomic<int> ready(0);
  std::atomic<bool> go(false);
  std::vector<float> sums(threads);
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      sums[t] = fma_chains(iterations, (float)t);
    });
  while (ready.load() < threads) std::this_thread::yield();
  auto t0 = std::chrono::steady_clock::now();
  go.store(true);
  for (auto& th : pool) th.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float total = 0;
  for (float v : sums) total += v;
  if (total != total) std::fprintf(stderr, "NaN\n");  // keeps the sums observable
  return 2.0 * kLanes * kChains * (double)iterations * threads / s / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s THREADS SECONDS\n", argv[0]);
    return 2;
  }
  int threads = std::atoi(argv[1]);
  double seconds = std::atof(argv[2]);
  if (threads < 1 || !(seconds > 0)) {
    std::fprintf(stderr, "THREADS must be >= 1 and SECONDS > 0\n");
    return 2;
  }
  // Size a round to ~seconds / 6 from a short calibration round.
  long calib = 1 << 20;
  double g = round_gflops(threads, calib);
  double flops_per_iter = 2.0 * kLanes * kChains * threads;
  long iterations = (long)(g * 1e9 * seconds / 6 / flops_per_iter);
  if (iterations < calib) iterations = calib;
  round_gflops(threads, iterations);  // warm-up (clocks, thread start-up)
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    double v = round_gflops(threads, iterations);
    if (v > best) best = v;
  }
  std::printf("%.2f\n", best);
  return 0;
}
