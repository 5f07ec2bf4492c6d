"""Start-up hook of the add-on for torch < 2.5 (no `torch.backends` entry-point autoload there).

`torch_grouped_conv_startup.pth`, installed beside this module in site-packages, imports it
when Python starts. It imports nothing heavy and never imports torch: it puts a one-shot
finder in front of `sys.meta_path` that waits for somebody to `import torch`, lets that
import run exactly as it would have, and only after torch has finished importing activates
the add-on (`import torch_grouped_conv`). Nothing else changes: a script that never
imports torch never loads anything, a failed `import torch` fails as it would have, and an
add-on that cannot load warns and leaves torch as it was.

Off switches: TORCH_GROUPED_CONV=0 (the add-on's own: off everywhere, `import
torch_grouped_conv` included) and TORCH_DEVICE_BACKEND_AUTOLOAD=0 (torch >= 2.5's switch for
its own autoload: only the automatic activation is off, `import torch_grouped_conv` still works).
This wheel ships only for torch < 2.5; newer torch autoloads the add-on itself.
"""
import os
import sys

OFF_SWITCHES = ("TORCH_GROUPED_CONV", "TORCH_DEVICE_BACKEND_AUTOLOAD")
ADDON = "torch_grouped_conv"


def _disabled():
    return any(os.environ.get(k, "").strip().lower() in ("0", "false", "no", "off")
               for k in OFF_SWITCHES)


def _activate():
    try:
        __import__(ADDON)
    except BaseException as exc:  # never let the add-on break `import torch`
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        import warnings
        warnings.warn("%s could not be activated after `import torch` (%s: %s); torch runs "
                      "unchanged. Set TORCH_GROUPED_CONV=0 to stop trying."
                      % (ADDON, type(exc).__name__, exc), RuntimeWarning, stacklevel=2)


class _AfterTorchLoader(object):
    """The real loader of `torch`, plus the add-on's activation once torch has executed."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # everything else: the real loader's (resources, get_code, ...)
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create else None

    def exec_module(self, module):
        self._loader.exec_module(module)
        # torch is complete here (its __init__ ran to the end); restore the real loader first
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        _activate()


class _WaitForTorch(object):
    """A meta-path finder that answers only for `torch`, once, with the real spec."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch":
            return None
        _remove()
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _AfterTorchLoader(spec.loader)
                return spec
        return None


def _remove():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _WaitForTorch)]


def install():
    """Called by the .pth line at start-up; does nothing when switched off or torch is in."""
    if _disabled():
        return
    if "torch" in sys.modules:
        _activate()
        return
    if not any(isinstance(f, _WaitForTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _WaitForTorch())
