"""Reproducible PyTorch-for-ARM64 build recipe (oneDNN + ACL + single-kernel grouped convs)."""
import os

RECIPE_VERSION = "0.1.0"

# Repository root: configs/, patches/, kernels/ live here.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir(*parts):
    """Where downloads, the emulation rootfs and build caches live (outside the repo).

    Override with RECIPE_CACHE; default ~/.cache/torch-arm-recipe.
    """
    root = os.environ.get("RECIPE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "torch-arm-recipe")
    return os.path.join(root, *parts)
