#pragma once
// The add-on's operator registrations, run by ONE explicit call from the Python loader
// (addon/torch_grouped_conv/_loader.py) instead of static initialisers.
//
// Why: the dispatcher reports a registration it cannot accept (an operator schema that
// differs in the running torch, a namespace some other library already defined, e.g. a
// second copy of this library) by throwing c10::Error. From a static initialiser that is
// std::terminate inside dlopen, i.e. inside `import torch`. Here each translation unit only
// records a registration function at load time (nothing of torch is called); the exported
// `torch_grouped_conv_register` runs them all inside try/catch, and on any failure destroys
// the torch::Library objects made so far (which undoes their registrations), so torch runs
// exactly as it did before, and returns the dispatcher's message.

#include <torch/library.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace recipe_registration {

// The torch::Library objects that hold the registrations; destroying one undoes its part.
using Libraries = std::vector<std::unique_ptr<torch::Library>>;
// Fills `libs`; may throw (the runner catches everything).
using RegisterFn = void (*)(Libraries& libs);

// Remembers fn for the runner (called from static initialisers; never calls torch).
bool add(RegisterFn fn);

// A new torch::Library appended to `libs` (kept alive by it).
torch::Library& library(Libraries& libs, torch::Library::Kind kind, const char* ns,
                        c10::optional<c10::DispatchKey> key, const char* file, unsigned line);

}  // namespace recipe_registration

// Runs the registrations (again after a refusal; once they succeeded, later calls only
// report that): 0 = every operator registered; 1 = none is (all undone), `message` holds
// why (NUL-terminated, cut to `size`).
extern "C" __attribute__((visibility("default"))) int torch_grouped_conv_register(
    char* message, std::size_t size);
