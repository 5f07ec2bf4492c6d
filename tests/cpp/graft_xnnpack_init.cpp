// Graft: the tree's aten/src/ATen/native/xnnpack/Init.cpp (xnnpack::available()) compiled
// unchanged, with xnn_initialize replaced by a counting stand-in whose result the test
// chooses (every symbol of the library is local: the wheel's XNNPACK is not touched).
// graft_available_calls(threads, calls, fail) calls available() `calls` times from each of
// `threads` threads started together and returns how often xnn_initialize ran
// (-1: available() answered differently from what xnn_initialize said).
#include <ATen/native/xnnpack/Common.h>
#include <ATen/native/xnnpack/Engine.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {
std::atomic<int> g_calls{0};
std::atomic<bool> g_fail{false};
}  // namespace

extern "C" enum xnn_status xnn_initialize(const struct xnn_allocator*) {
  g_calls.fetch_add(1);
  std::this_thread::yield();  // widen the window a racy flag leaves open
  return g_fail.load() ? xnn_status_unsupported_hardware : xnn_status_success;
}

extern "C" __attribute__((visibility("default"))) int graft_available_calls(int threads,
                                                                           int calls, int fail) {
  g_fail = fail != 0;
  std::atomic<bool> go{false}, wrong{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      while (!go.load()) {
      }
      for (int i = 0; i < calls; ++i) {
        if (at::native::xnnpack::available() == (fail != 0)) wrong = true;
      }
    });
  }
  go = true;
  for (auto& th : pool) th.join();
  return wrong ? -1 : g_calls.load();
}
