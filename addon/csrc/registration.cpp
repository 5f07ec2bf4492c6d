// The runner of the add-on's operator registrations (see Registration.h).

#include <Registration.h>

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <mutex>
#include <string>

namespace recipe_registration {
namespace {

std::vector<RegisterFn>& functions() {
  static std::vector<RegisterFn> fns;  // filled during static initialisation
  return fns;
}

struct Outcome {
  bool ok = false;
  std::string message;
  Libraries libs;
};

Outcome run_all() {
  Outcome out;
  try {
    for (RegisterFn fn : functions()) fn(out.libs);
    out.ok = true;
  } catch (const c10::Error& e) {
    out.message = e.what_without_backtrace();
  } catch (const std::exception& e) {
    out.message = e.what();
  } catch (...) {
    out.message = "unknown exception";
  }
  if (!out.ok) {
    while (!out.libs.empty()) out.libs.pop_back();  // undo, newest first
  }
  return out;
}

}  // namespace

bool add(RegisterFn fn) {
  functions().push_back(fn);
  return true;
}

torch::Library& library(Libraries& libs, torch::Library::Kind kind, const char* ns,
                        c10::optional<c10::DispatchKey> key, const char* file, unsigned line) {
  libs.push_back(std::make_unique<torch::Library>(kind, ns, key, file, line));
  return *libs.back();
}

}  // namespace recipe_registration

extern "C" int torch_grouped_conv_register(char* message, std::size_t size) {
  static std::mutex mutex;
  static recipe_registration::Outcome outcome;  // per copy of the library
  std::lock_guard<std::mutex> lock(mutex);
  if (!outcome.ok) outcome = recipe_registration::run_all();  // a refused one can be retried
  if (message != nullptr && size > 0) {
    std::strncpy(message, outcome.message.c_str(), size - 1);
    message[size - 1] = '\0';
  }
  return outcome.ok ? 0 : 1;
}
