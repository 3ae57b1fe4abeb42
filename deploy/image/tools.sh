#!/usr/bin/env bash
# Makes sure the named programs are on the PATH: installs their Debian packages
# when run as root on Debian, otherwise says what to install and fails.
# Usage: deploy/image/tools.sh buildah [skopeo] [debootstrap]
set -euo pipefail

missing=()
for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]})) || exit 0

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "tools: installing ${missing[*]} (Debian packages)" >&2
    # An install from stale package lists fails; refresh them and try once more.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
else
    echo "tools: ${missing[*]} missing; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
