// CPU capability of the running machine for the add-on's kernel tables
// (CapabilityDispatch.h), and the torch_grouped_conv:: introspection operators.
//
// x86_64: AVX512 (avx512f+bw+vl+dq, fma) > AVX2 (avx2+fma) > DEFAULT, the same split as
// torch's own CPU capability; GCC's __builtin_cpu_supports also checks that the OS saves
// the AVX/AVX-512 registers (XCR0).
// aarch64: FP16 when the kernel reports ARMv8.2-A FP16 vector arithmetic (HWCAP asimdhp:
// Xavier's Carmel, Orin's A78AE, Graviton 2+), else DEFAULT (ARMv8.0 NEON).
// A cap can be set with TORCH_GROUPED_CONV_CPU_CAPABILITY=default|avx2|avx512|fp16 or,
// as for torch itself, ATEN_CPU_CAPABILITY; a cap never selects more than the CPU has.

#include <CapabilityDispatch.h>
#include <Registration.h>

#include <torch/library.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1UL << 10)
#endif
#endif

namespace recipe_dispatch {
namespace {

const char* const kCapEnv = "TORCH_GROUPED_CONV_CPU_CAPABILITY";
const char* const kTorchCapEnv = "ATEN_CPU_CAPABILITY";

int cpu_best() noexcept {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return DEFAULT;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return AVX512;
  }
  return AVX2;
#elif defined(__aarch64__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDHP) ? FP16 : DEFAULT;
#else
  return DEFAULT;
#endif
}

std::string lower(const char* s) {
  std::string v(s);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  return v;
}

// -1: no cap from this value (unset, or a torch capability that is no limit here, e.g. sve256)
int parse_cap(const char* text, bool* known) {
  *known = true;
  if (text == nullptr || *text == '\0') return -1;
  const std::string v = lower(text);
  if (v == "default") return DEFAULT;
#if defined(__x86_64__)
  if (v == "avx2") return AVX2;
  if (v == "avx512") return AVX512;
#elif defined(__aarch64__)
  if (v == "fp16") return FP16;
  if (v == "sve" || v == "sve128" || v == "sve256") return -1;
#endif
  *known = false;
  return -1;
}

struct Selection {
  int capability = DEFAULT;
  std::string note;
  Selection() {
    const int best = cpu_best();
    capability = best;
    note = std::string("CPU supports ") + capability_name(best);
    for (const char* env : {kCapEnv, kTorchCapEnv}) {
      const char* text = std::getenv(env);
      bool known = true;
      const int cap = parse_cap(text, &known);
      if (!known) {
        note += std::string("; ") + env + "='" + text + "' ignored (allowed here: default" +
#if defined(__x86_64__)
                ", avx2, avx512" +
#elif defined(__aarch64__)
                ", fp16" +
#endif
                ")";
        continue;
      }
      if (cap < 0) continue;
      if (cap < capability) {
        capability = cap;
        note += std::string("; capped by ") + env + "=" + text;
      }
      break;  // the add-on's own variable wins over torch's
    }
  }
};

const Selection& selection() {
  static const Selection s;
  return s;
}

}  // namespace

int selected_capability() noexcept { return selection().capability; }

const char* capability_name(int capability) noexcept {
  switch (capability) {
    case DEFAULT:
      return "DEFAULT";
#if defined(__x86_64__)
    case AVX2:
      return "AVX2";
    case AVX512:
      return "AVX512";
#elif defined(__aarch64__)
    case FP16:
      return "FP16";
#endif
    default:
      return "?";
  }
}

namespace {
std::string cpu_capability() { return capability_name(selected_capability()); }
std::string cpu_capability_note() { return selection().note; }

void register_operators(recipe_registration::Libraries& libs) {
  auto& m = recipe_registration::library(libs, torch::Library::DEF, "torch_grouped_conv",
                                         c10::optional<c10::DispatchKey>(), __FILE__, __LINE__);
  m.def("cpu_capability() -> str", TORCH_FN(cpu_capability));
  m.def("cpu_capability_note() -> str", TORCH_FN(cpu_capability_note));
}
const bool kRecorded = recipe_registration::add(register_operators);
}  // namespace

}  // namespace recipe_dispatch
