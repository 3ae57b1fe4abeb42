#!/usr/bin/env bash
# Writes the image of a Bento as an OCI archive file, for moving it to an
# air-gapped cluster's registry (`skopeo copy oci-archive:FILE docker://...`).
# Builds the image first (build.sh) when the local store does not have it.
#
# Usage: BENTOML_HOME=<store> deploy/image/archive.sh BENTO [NAME [DIR]]
# The last line on stdout is the archive's path: DIR/NAME-<version>.oci.tar.
set -euo pipefail

BENTO=${1:?usage: archive.sh BENTO [NAME [DIR]]}
NAME=${2:-loan-approval-service}
DIR=${3:-dist}
HERE=$(cd "$(dirname "$0")" && pwd)
BENTOML=$(realpath "$(command -v "${BENTOML:-bentoml}")")
export BENTOML BENTOML_DO_NOT_TRACK=true
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$HERE/storage.conf}

version=$("$BENTOML" get "$BENTO" -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
mkdir -p "$DIR"
archive="$DIR/$NAME-$version.oci.tar"
rm -f "$archive"
"$HERE/tools.sh" skopeo
if docker info >/dev/null 2>&1; then
    docker image inspect "$NAME:$version" >/dev/null 2>&1 || "$HERE/build.sh" "$BENTO" "$NAME" >/dev/null
    source="docker-daemon:$NAME:$version"
else
    buildah inspect --type image "localhost/$NAME:$version" >/dev/null 2>&1 \
        || "$HERE/build.sh" "$BENTO" "$NAME" >/dev/null
    source="containers-storage:localhost/$NAME:$version"
fi
# The archive's own reference is NAME:<version>, so a registry copy keeps the tag.
skopeo copy --quiet "$source" "oci-archive:$archive:$NAME:$version" >&2
echo "archive: $archive ($(du -m "$archive" | cut -f1) MB)" >&2
echo "$archive"
