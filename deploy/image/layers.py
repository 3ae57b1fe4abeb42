"""Print an image's size by layer: uncompressed, as it sits in the local image
store, with the instructions that made each layer; with --contents, also the
largest folders of the image's /app (the venv's packages, the Bento).

    python3 deploy/image/layers.py [--contents] localhost/loan-approval-service:<version>

Reads the image's manifest and config with skopeo; --contents mounts a
throw-away buildah container of the image. Sizes are in MB of 10^6 bytes, as
`docker images` counts them. buildah (without --layers) commits each build
stage as one layer, so a BentoML image has two: the base image's and ours.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

CONTENT_ROOTS = ("app/.venv/lib/python3.11/site-packages", "app/bento", "app/bento/models")
TOP = 8
STORAGE_CONF = Path(__file__).with_name("storage.conf")


def _run(*command: str) -> str:
    # The project's image store unless the caller names another.
    env = {"CONTAINERS_STORAGE_CONF": str(STORAGE_CONF), **os.environ}
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def inspect(image: str, *, config: bool = False) -> dict[str, Any]:
    flags = ["--config"] if config else []
    return json.loads(_run("skopeo", "inspect", "--raw", *flags, f"containers-storage:{image}"))


def layer_sizes(image: str) -> list[tuple[int, str]]:
    """(bytes, the instructions that made it) for every layer, base first."""
    sizes = [layer["size"] for layer in inspect(image)["layers"]]
    made_by: list[str] = []
    pending: list[str] = []
    for entry in inspect(image, config=True).get("history", []):
        text = " ".join(entry.get("created_by", "").replace("/bin/sh -c #(nop) ", "").split())
        # ARG/ENV/EXPOSE and the like change no files; name only what does.
        if text.startswith(("COPY", "ADD")) or "/bin/sh -c" in text or text == "/bin/sh":
            text = re.sub(r"dir:[0-9a-f]+ ", "", text.split(" /bin/sh -c ")[-1])
            pending.append(text[:60])
        if not entry.get("empty_layer"):
            # A layer committed outside a Dockerfile (the stand-in base) has only
            # its own entry.
            if not pending and text:
                pending.append(text[:60])
            made_by.append("; ".join(pending))
            pending = []
    if len(made_by) != len(sizes):
        made_by = [""] * len(sizes)
    return list(zip(sizes, made_by, strict=True))


def largest_folders(image: str) -> dict[str, list[tuple[int, str]]]:
    """The TOP largest entries under each of CONTENT_ROOTS, in bytes."""
    container = _run("buildah", "from", "--pull=never", image).strip()
    try:
        root = Path(_run("buildah", "mount", container).strip())
        found = {}
        for folder in CONTENT_ROOTS:
            if (root / folder).is_dir():
                lines = _run("du", "-s", "-B1", *map(str, (root / folder).iterdir())).splitlines()
                sizes = [(int(size), Path(path).name) for size, path in map(str.split, lines)]
                found[folder] = sorted(sizes, reverse=True)[:TOP]
        return found
    finally:
        _run("buildah", "rm", container)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--contents", action="store_true")
    args = parser.parse_args(argv)
    layers = layer_sizes(args.image)
    total = sum(size for size, _ in layers)
    print(f"{args.image}: {total / 1e6:.0f} MB uncompressed in {len(layers)} layers")
    for size, made_by in layers:
        print(f"  {size / 1e6:7.1f} MB  {made_by[:150]}")
    if args.contents:
        for folder, entries in largest_folders(args.image).items():
            listed = ", ".join(f"{name} {size / 1e6:.0f}" for size, name in entries)
            print(f"  /{folder} (MB): {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
