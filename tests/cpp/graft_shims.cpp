// Test-only stand-ins for two internals the official wheel does not export but the
// grafted xnnpack/*.cpp and utils/Factory.cpp call. Neither affects the numbers:
//  * caffe2::pthreadpool_(): nullptr makes XNNPACK run on the calling thread (the real
//    build passes PyTorch's pthreadpool; threading does not change the arithmetic);
//  * propagate_names_if_present_and_nonempty: the tests use unnamed tensors only.
#include <ATen/NamedTensorUtils.h>
#include <caffe2/utils/threadpool/pthreadpool-cpp.h>

namespace caffe2 {
pthreadpool_t pthreadpool_() { return nullptr; }
}  // namespace caffe2

namespace at::namedinference {
const at::Tensor& propagate_names_if_present_and_nonempty(
    const at::Tensor& result, std::optional<at::DimnameList> maybe_names, bool /*validate_names*/) {
  TORCH_CHECK(!maybe_names || maybe_names->empty(), "graft: named tensors are not supported");
  return result;
}
}  // namespace at::namedinference
