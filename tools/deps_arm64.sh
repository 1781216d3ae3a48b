#!/usr/bin/env bash
# Installs what the aarch64 kernel tests need on an x86-64 Debian machine (tools/test.sh runs it):
# Debian's aarch64 cross compiler, qemu-user, and oneTBB for arm64 through dpkg multiarch. Safe to
# run again (it installs nothing then); does nothing on other architectures.
# libtbb-dev:arm64 pulls libudev1:arm64, which must equal the amd64 version: it is pinned to the
# installed amd64 one so apt does not upgrade systemd along with it; if that version is no longer
# in the archive, apt picks the current one (and upgrades the amd64 libudev1 to match).
set -euo pipefail
[ "$(uname -m)" = x86_64 ] || exit 0
installed() { local s; s=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true); [[ "$s" == *"install ok installed"* ]]; }
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in qemu-user g++-aarch64-linux-gnu; do installed "$p" || missing+=("$p"); done
if ! installed libtbb-dev:arm64; then
  grep -qx arm64 <<< "$(dpkg --print-foreign-architectures)" || $sudo dpkg --add-architecture arm64
  missing+=(libtbb-dev:arm64)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ddpmc: installing for the aarch64 kernel tests: ${missing[*]}"
$sudo apt-get update -qq
udev=$(dpkg-query -W -f='${Version}' libudev1:amd64 2>/dev/null || true)
if [ -n "$udev" ] && [[ " ${missing[*]} " == *" libtbb-dev:arm64 "* ]] &&
   $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" "libudev1:arm64=$udev"; then
  exit 0
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
