#pragma once
// Out-of-tree replacement for ATen's DispatchStub, used by the add-on build only
// (recipe/addon.py force-includes this header into every TU with `-include`; the in-tree
// build never sees it).
//
// Why: DispatchStub's layout and the signature of the exported
// at::native::DispatchStubImpl methods depend on the CPU capabilities a torch build enables
// (HAVE_*_CPU_DEFINITION), so a kernel library using it loads only into builds configured
// like the one it was compiled against. Here the kernel sources stay exactly as the patch
// series installs them in-tree (DECLARE_DISPATCH / DEFINE_DISPATCH / REGISTER_DISPATCH);
// only the macros change meaning: each stub becomes a plain table of function pointers, one
// slot per capability the add-on compiles the *Kernel.cpp files for, filled by
// REGISTER_DISPATCH at load time and read at call time with this CPU's capability
// (cpuid on x86_64, getauxval(AT_HWCAP) on aarch64; see capability_dispatch.cpp). Nothing
// of torch's DispatchStub is referenced, so nothing of it has to match.
//
// Caveat (checked by the build: no undefined `*_stub` symbol may remain): a torch header
// with inline code that CALLS one of torch's own stubs would, after this redefinition,
// reference that stub with the wrong type. None of the headers the kernels include does.

#include <ATen/native/DispatchStub.h>  // torch's definitions first; replaced below

#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>

#include <utility>

namespace recipe_dispatch {

// Slots, ordered from the most portable to the most demanding: a stub falls back to the
// next lower slot that has a kernel. The names are the CPU_CAPABILITY values the build
// compiles the kernels with.
enum Capability : int {
  DEFAULT = 0,
#if defined(__x86_64__)
  AVX2 = 1,
  AVX512 = 2,
#elif defined(__aarch64__)
  FP16 = 1,  // ARMv8.2-A FP16 vector arithmetic (HWCAP asimdhp)
#endif
  kNumCapabilities = 3
};

// The capability this process runs: the best one the CPU has, capped by
// TORCH_GROUPED_CONV_CPU_CAPABILITY or torch's ATEN_CPU_CAPABILITY (computed once).
int selected_capability() noexcept;
const char* capability_name(int capability) noexcept;

template <typename FnPtr>
struct Table {
  FnPtr slots[kNumCapabilities];  // static storage: zero-initialised before any registration

  FnPtr choose() const noexcept {
    for (int c = selected_capability(); c >= 0; --c) {
      if (slots[c] != nullptr) return slots[c];
    }
    return nullptr;
  }

  template <typename... Args>
  decltype(auto) operator()(c10::DeviceType device, Args&&... args) const {
    TORCH_CHECK(device == c10::DeviceType::CPU,
                "torch-grouped-conv: its kernels are CPU kernels, called for ", device);
    const FnPtr fn = choose();
    TORCH_CHECK(fn != nullptr, "torch-grouped-conv: no kernel was compiled for CPU capability ",
                capability_name(selected_capability()), " or below");
    return (*fn)(std::forward<Args>(args)...);
  }
};

}  // namespace recipe_dispatch

#define RECIPE_DISPATCH_CONCAT_(a, b) a##b
#define RECIPE_DISPATCH_CONCAT(a, b) RECIPE_DISPATCH_CONCAT_(a, b)

#undef DECLARE_DISPATCH
#undef DEFINE_DISPATCH
#undef REGISTER_ARCH_DISPATCH
#undef REGISTER_DISPATCH
#undef ALSO_REGISTER_AVX512_DISPATCH
#undef ALSO_REGISTER_SVE128_DISPATCH
#undef ALSO_REGISTER_SVE256_DISPATCH
#undef REGISTER_ALL_CPU_DISPATCH
#undef REGISTER_NO_CPU_DISPATCH

#define DECLARE_DISPATCH(fn, name)                                     \
  using name##_DECLARE_DISPATCH_type = ::recipe_dispatch::Table<fn>; \
  extern name##_DECLARE_DISPATCH_type name;

#define DEFINE_DISPATCH(name) name##_DECLARE_DISPATCH_type name

// One registration per stub and TU (each *Kernel.cpp object is one capability).
#define REGISTER_ARCH_DISPATCH(name, arch, fn)                                       \
  static const bool RECIPE_DISPATCH_CONCAT(name, _registered_in_this_capability) = \
      ((name).slots[::recipe_dispatch::arch] = (fn), true);

// As in torch: REGISTER_DISPATCH leaves the AVX512 slot empty (AVX2 serves it),
// ALSO_REGISTER_AVX512_DISPATCH fills it.
#if defined(CPU_CAPABILITY_AVX512)
#define REGISTER_DISPATCH(name, fn) REGISTER_ARCH_DISPATCH(name, CPU_CAPABILITY, nullptr)
#else
#define REGISTER_DISPATCH(name, fn) REGISTER_ARCH_DISPATCH(name, CPU_CAPABILITY, fn)
#endif
#define ALSO_REGISTER_AVX512_DISPATCH(name, fn) REGISTER_ARCH_DISPATCH(name, CPU_CAPABILITY, fn)
#define ALSO_REGISTER_SVE128_DISPATCH(name, fn) REGISTER_ARCH_DISPATCH(name, CPU_CAPABILITY, fn)
#define ALSO_REGISTER_SVE256_DISPATCH(name, fn) REGISTER_ARCH_DISPATCH(name, CPU_CAPABILITY, fn)

#define REGISTER_ALL_CPU_DISPATCH(name, fn)                                                  \
  static const bool RECIPE_DISPATCH_CONCAT(name, _registered_for_all_capabilities) = [] {   \
    for (int c = 0; c < ::recipe_dispatch::kNumCapabilities; ++c) (name).slots[c] = (fn); \
    return true;                                                                             \
  }();
#define REGISTER_NO_CPU_DISPATCH(name)
