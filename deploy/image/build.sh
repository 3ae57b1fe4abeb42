#!/usr/bin/env bash
# Builds the OCI image of a Bento with `bentoml containerize`, tagged
# NAME:<the Bento's version>: with Docker where a Docker daemon answers, otherwise
# with buildah (daemonless; chroot isolation and vfs storage, so it also works
# inside containers and sandboxes). With buildah, the base image comes from the
# local store, else from its registry, else - only when it cannot be had - the
# stand-in of base-image.sh is made, and the build says so.
#
# Usage: BENTOML_HOME=<store> deploy/image/build.sh BENTO [NAME]
# The model is copied from BENTOML_HOME's model store at build time (the Bento in
# the store only names it), so the store must be the one the Bento was built in.
# Progress goes to stderr; the last line on stdout is the image reference.
set -euo pipefail

BENTO=${1:?usage: build.sh BENTO [NAME]}
NAME=${2:-loan-approval-service}
BENTOML=$(realpath "$(command -v "${BENTOML:-bentoml}")") || { echo "build.sh: bentoml not found (set BENTOML)" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
STAND_IN_LABEL=org.loan-approval.base-image.stand-in
export BENTOML_DO_NOT_TRACK=true
# The project's image store (vfs, storage.conf says why) and chroot isolation:
# neither needs kernel overlay or user namespaces. BentoML's buildah inherits both.
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$HERE/storage.conf}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
: "${BENTOML_HOME:?set BENTOML_HOME to the store that holds the Bento and its model}"
BENTOML_HOME=$(realpath "$BENTOML_HOME")

tag=$("$BENTOML" get "$BENTO" -o json | python3 -c 'import json, sys; b = json.load(sys.stdin); print(b["name"] + ":" + b["version"])')
version=${tag#*:}
image="$NAME:$version"
dockerfile="$BENTOML_HOME/bentos/${tag%%:*}/$version/env/docker/Dockerfile"
base=$(awk 'toupper($1) == "FROM" {print $2; exit}' "$dockerfile")

# Docker's rule for names without a registry: docker.io, and library/ for one part.
qualified() {
    local first=${1%%/*}
    if [[ $1 != */* ]]; then echo "docker.io/library/$1"
    elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then echo "$1"
    else echo "docker.io/$1"
    fi
}

ensure_base() {
    local full
    full=$(qualified "$base")
    buildah inspect --type image "$full" >/dev/null 2>&1 && return
    echo "image: $full is not in the local store; pulling it" >&2
    # A registry that cannot be reached fails in seconds or hangs behind a proxy.
    timeout 180 buildah pull --quiet "$full" >/dev/null && return
    echo "image: $full cannot be pulled; making the stand-in from Debian's packages" >&2
    "$HERE/tools.sh" debootstrap
    "$HERE/base-image.sh" "$full"
}

if docker info >/dev/null 2>&1; then
    backend=docker
else
    backend=buildah
    "$HERE/tools.sh" buildah
    ensure_base
fi

started=$(date +%s)
# Not `--opt pull=never`: BentoML passes it to buildah in a form buildah refuses;
# buildah's default already uses a base image that is in the local store.
# From /: BentoML 1.4.40 re-reads the Bento's dockerfile_template from its
# temporary build context (under $TMPDIR) and refuses any path outside the
# working directory, so from anywhere else containerize fails with "Accessing
# file outside of current working directory is not allowed".
# BentoML's build script runs under `set -x` (some sixty lines of shell trace):
# kept in a log file, shown only when the build fails.
build_log=$(realpath -m "${IMAGE_BUILD_LOG:-dist/image-build.log}")
mkdir -p "$(dirname "$build_log")"
echo "image: building $image from $tag with $backend (BentoML's output: $build_log)" >&2
if ! (cd / && "$BENTOML" containerize --backend "$backend" --image-tag "$image" "$tag") >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    echo "image: bentoml containerize failed; its whole output is in $build_log" >&2
    exit 1
fi
echo "image: $image built from $tag with $backend in $(($(date +%s) - started)) s" >&2

if [[ $backend == buildah ]]; then
    # buildah names a tag without a registry localhost/NAME:TAG.
    image="localhost/$image"
    stand_in=$(buildah inspect --type image \
        --format "{{index .OCIv1.Config.Labels \"$STAND_IN_LABEL\"}}" "$image")
    if [[ -n $stand_in && $stand_in != "<no value>" ]]; then
        echo "image: BUILT ON A STAND-IN for $base ($stand_in), not on the official image" >&2
    fi
    python3 "$HERE/layers.py" --contents "$image" >&2
fi
echo "$image"
