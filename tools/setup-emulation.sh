#!/usr/bin/env bash
# Set up (first run: a few minutes) or verify (later: well under a second) the aarch64
# emulation harness: host packages, binfmt_misc + qemu-aarch64, an arm64 Debian bookworm
# rootfs and the official torch 2.6.0 aarch64 wheel installed offline inside it.
# Cached outside the repo under $RECIPE_CACHE (default ~/.cache/torch-arm-recipe)/emu.
# Needs root for apt-get, binfmt_misc, debootstrap and chroot. See tests/harness/emulation.py.
#   tools/setup-emulation.sh            # setup
#   tools/setup-emulation.sh status     # what is there (JSON)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m tests.harness.emulation "${@:-setup}"
