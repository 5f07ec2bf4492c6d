"""What every part of `build.py pull` shares: its error, its timeouts, the project it pulls."""
from __future__ import annotations

import os

from recipe import REPO_ROOT, RECIPE_VERSION, errors

DEFAULT_INDEX = os.path.join(REPO_ROOT, "wheels", "index.json")
RELEASES_DIR = os.path.join(REPO_ROOT, "configs", "releases")
PROJECT = "torch"
USER_AGENT = "torch-arm-recipe-pull/" + RECIPE_VERSION
DEFAULT_TIMEOUT = 60.0    # seconds without a byte: the server stalls
DEFAULT_DEADLINE = 3600.0  # seconds for one whole download: a server that trickles is cut off
MAX_INDEX_BYTES = 64 << 20
INDEX_TEXT_FIELDS = ("url", "sha256", "target", "release", "python", "python_tag", "abi_tag",
                     "platform_tag", "cuda", "version", "recipe_version", "manifest")
WEB_SCHEMES = ("http", "https")


class PullError(errors.RecipeError):
    """A failure with the message for the user (what failed, where, what to do); exit 1."""
