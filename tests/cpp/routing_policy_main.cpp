// Prints the routing decision for every combination of case facts and override, one
// line each: "<depthwise><channels_last><need_backward><acl><mkldnn><xnnpack><winograd><native><native_grouped>
// <override> <kernel>".
// Built by tests/test_routing_policy.py for x86_64 and (statically) for aarch64.
#include <ATen/native/ConvRouting.h>

#include <cstdio>

using namespace at::native::conv_routing;

int main() {
  const char* overrides[] = {"auto", "mkldnn", "xnnpack", "winograd", "native", "loop"};
  for (unsigned bits = 0; bits < 512; ++bits) {
    Case c;
    c.depthwise = bits & 256;
    c.channels_last = bits & 128;
    c.need_backward = bits & 64;
    c.mkldnn_is_acl = bits & 32;
    c.mkldnn = bits & 16;
    c.xnnpack = bits & 8;
    c.winograd = bits & 4;
    c.native = bits & 2;
    c.native_grouped = bits & 1;
    for (const char* text : overrides) {
      bool ok = false;
      const Kernel forced = parse(text, &ok);
      if (!ok) return 2;
      std::printf("%d%d%d%d%d%d%d%d%d %s %s\n", c.depthwise, c.channels_last, c.need_backward,
                  c.mkldnn_is_acl, c.mkldnn, c.xnnpack, c.winograd, c.native, c.native_grouped,
                  text, name(choose(c, forced)));
    }
  }
  bool ok = true;
  parse("nativ", &ok);  // a typo must be reported, not silently ignored
  return ok ? 3 : 0;
}
