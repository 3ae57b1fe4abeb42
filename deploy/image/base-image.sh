#!/usr/bin/env bash
# Makes a stand-in for the python:3.11-slim base image from Debian's own
# packages, for build hosts that cannot reach an image registry (air-gapped, or
# behind a proxy that only lets package indexes through). It is what the Bento's
# Dockerfile needs of python:3.11-slim and no more: Debian bookworm (minbase) with
# python3.11, pip, ca-certificates and passwd (useradd), `python`/`python3`/`pip`/
# `pip3` in /usr/local/bin like the official image, no EXTERNALLY-MANAGED marker
# (pip may install into the system Python, as in the official image), and the
# host's locally added CA certificates trusted, so that pip and uv in the build
# reach the package index through a TLS-inspecting proxy.
#
# Its Python is Debian's 3.11.2, not the official image's latest 3.11.x; the
# image carries the label STAND_IN_LABEL so builds on it can say so.
#
# Usage: deploy/image/base-image.sh [IMAGE]   (default docker.io/library/python:3.11-slim)
# Needs root, buildah and debootstrap (`make base-image` installs them on Debian).
set -euo pipefail

IMAGE=${1:-docker.io/library/python:3.11-slim}
SUITE=bookworm
PACKAGES=python3.11,python3-pip,ca-certificates,passwd
STAND_IN_LABEL=org.loan-approval.base-image.stand-in
HERE=$(cd "$(dirname "$0")" && pwd)
# The project's image store (vfs, storage.conf says why) and chroot isolation:
# neither needs kernel overlay or user namespaces.
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$HERE/storage.conf}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

# The Debian mirror is the one this host's apt already uses (a proxy or mirror
# set up for the host works for the image too); DEBIAN_MIRROR overrides it.
host_mirror() {
    local uri
    uri=$(awk '/^URIs:/{u=$2} /^Suites:/ && / '"$SUITE"'( |$)/{print u; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -n $uri ]] || uri=$(awk '$1=="deb" && $3=="'"$SUITE"'"{print $2; exit}' \
        /etc/apt/sources.list 2>/dev/null || true)
    echo "$uri"
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
[[ -n $MIRROR ]] || { echo "base-image: no Debian $SUITE mirror in the host's apt sources; set DEBIAN_MIRROR" >&2; exit 1; }

started=$(date +%s)
container=$(buildah from scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
root=$(buildah mount "$container")

echo "base-image: debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2

# The host's locally added CAs (a TLS-inspecting proxy's, a private index's).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null
# uv (which BentoML's Dockerfile installs and runs) uses its own CA bundle unless
# told to use the system's.
mkdir -p "$root/etc/uv"
printf 'native-tls = true\n' >"$root/etc/uv/uv.toml"

# Where the official image has its Python and pip.
for name in python python3; do ln -sf /usr/bin/python3.11 "$root/usr/local/bin/$name"; done
for name in pip pip3; do ln -sf /usr/bin/pip3 "$root/usr/local/bin/$name"; done
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# No package lists or downloaded .debs in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb

python_version=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
buildah umount "$container" >/dev/null
buildah config \
    --created-by "debootstrap --variant=minbase --include=$PACKAGES $SUITE; host CAs; /usr/local/bin links" \
    --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env PYTHON_VERSION="$python_version" \
    --cmd python3 \
    --label "$STAND_IN_LABEL=debootstrap $SUITE, Debian's Python $python_version" \
    "$container"
buildah commit --quiet --rm "$container" "$IMAGE" >/dev/null
trap - EXIT
echo "base-image: $IMAGE is a stand-in (Debian's Python $python_version), made in $(($(date +%s) - started)) s" >&2
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE" >&2
