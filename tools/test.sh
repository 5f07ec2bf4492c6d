#!/usr/bin/env bash
# The test command (README): sets up everything the suite needs on a fresh Debian/Ubuntu
# machine (apt packages, Python packages, the aarch64 emulation root filesystem, the real
# PyTorch 2.6.0 source tree; caches live outside the repo under $RECIPE_CACHE), then runs
# the whole suite. Extra arguments go to pytest (e.g. `bash tools/test.sh -k routing`).
set -euo pipefail
cd "$(dirname "$0")/.."

export RECIPE_CACHE="${RECIPE_CACHE:-$HOME/.cache/torch-arm-recipe}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  qemu-user-static binfmt-support debootstrap gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
  g++ cmake ninja-build scons git patchelf file unzip xz-utils dpkg-dev
  redis-server redis-tools ccache podman busybox-static python3-yaml
  meson pkg-config libglib2.0-dev patch
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing apt packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

echo "== python packages (requirements-test.txt)"
python3 -m pip install -q -r requirements-test.txt

echo "== aarch64 emulation (rootfs, qemu-user, official torch 2.6.0 aarch64 wheel)"
python3 -m tests.harness.emulation setup

echo "== PyTorch 2.6.0 source tree (Debian pytorch 2.6.0+dfsg-7, sha256-verified)"
python3 -m tests.harness.pytorch_source

echo "== tests"
# One worker per core (RECIPE_TEST_JOBS=1: one process); each test file stays in one worker, so
# its module fixtures (builds, qemu processes) are made once; shared caches are locked.
exec python3 -m pytest -n "${RECIPE_TEST_JOBS:-$(nproc)}" --dist loadfile "$@"
