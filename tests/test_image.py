"""The OCI image of a fresh Bento, built the way `make image` builds it
(deploy/image/build.sh: `bentoml containerize --backend buildah`) and run.

The image's own entrypoint runs with `buildah run --isolation chroot`. Chroot
isolation gives the server the image's filesystem, environment and user, and
nothing more: no network or process isolation. The server therefore listens on
the host's 127.0.0.1 (on a free port), and its processes are visible from the
host, which is how this test reads their user and environment from /proc.

It needs root and buildah (installed from Debian's packages when missing and
root) and skips LOUDLY otherwise. The base image is taken from the project's
image store (deploy/image/storage.conf), where the first run makes the stand-in
when python:3.11-slim cannot be pulled (about 2 minutes) and later runs find it.
The test's own image and container are removed at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import psutil
import pytest

from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from tests.support.server import (
    BENTOML,
    ROOT,
    START_ATTEMPTS,
    free_port,
    lost_port_race,
    wait_ready,
)
from tests.test_e2e import assert_serves_like_the_pipeline
from tests.test_kubernetes import container as deployed_container
from tests.test_kubernetes import image_template_value, resource

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

IMAGE_DIR: Final = ROOT / "deploy" / "image"
STORAGE_CONF: Final = IMAGE_DIR / "storage.conf"
IMAGE_NAME: Final = "loan-approval-service-test"
READY_WITHIN_S: Final = 15.0
# The image's runtime user (deploy/image/Dockerfile.j2), the Deployment's runAsUser.
RUNTIME_UID: Final = int(image_template_value("uid"))
SERVING_PORT: Final = 3000
# What the image must not carry: a compiler, git, apt's package lists.
FORBIDDEN: Final = ("usr/bin/gcc", "usr/bin/cc", "usr/bin/git", "usr/bin/make")
MAX_IMAGE_BYTES: Final = 650 * 10**6
VENV: Final = "app/.venv"


def _layers_module():
    spec = importlib.util.spec_from_file_location("image_layers", IMAGE_DIR / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(bentoml_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML": BENTOML,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF),
        "BUILDAH_ISOLATION": "chroot",
    }


def buildah(*args: str, check: bool = True) -> str:
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF)}
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def require_buildah() -> None:
    """Install buildah and skopeo when missing and root; skip loudly otherwise."""
    if os.geteuid() != 0:
        pytest.skip(
            "IMAGE NOT BUILT OR RUN: needs root (buildah with chroot isolation and vfs "
            "storage); run `make test` as root, or `sudo make image` by hand"
        )
    if shutil.which("buildah") and shutil.which("skopeo"):
        return
    done = subprocess.run(
        [str(IMAGE_DIR / "tools.sh"), "buildah", "skopeo"], capture_output=True, text=True
    )
    assert done.returncode == 0, f"installing buildah failed:\n{done.stderr[-3000:]}"


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    build_seconds: float
    build_log: str


@pytest.fixture(scope="module")
def image(built_bento, bentoml_home) -> Iterator[BuiltImage]:
    require_buildah()
    started = time.monotonic()
    done = subprocess.run(
        [str(IMAGE_DIR / "build.sh"), built_bento, IMAGE_NAME],
        capture_output=True,
        text=True,
        env=_env(bentoml_home),
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    reference = done.stdout.strip().splitlines()[-1]
    print(done.stderr[-3000:], file=sys.stderr)
    try:
        yield BuiltImage(reference, time.monotonic() - started, done.stderr)
    finally:
        buildah("rmi", "--force", reference, check=False)


@pytest.fixture(scope="module")
def image_config(image) -> dict:
    return json.loads(buildah("inspect", "--type", "image", image.reference))["OCIv1"]["config"]


@pytest.fixture(scope="module")
def working_container(image) -> Iterator[str]:
    name = buildah("from", "--pull=never", image.reference).strip()
    try:
        yield name
    finally:
        buildah("rm", name, check=False)


@pytest.fixture(scope="module")
def rootfs(working_container) -> Path:
    """The container's filesystem as seen from the host (vfs: a plain directory)."""
    return Path(buildah("mount", working_container).strip())


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    ready_seconds: float
    log_path: Path
    # The 1-minute load average when the server was started.
    load_before: float

    def server_processes(self) -> list[psutil.Process]:
        """The image's processes: the descendants of `buildah run` but its own
        helpers (buildah-chroot-runtime as root, buildah-chroot-exec, which
        starts the entrypoint as the image's user)."""
        return [
            p
            for p in psutil.Process(self.process.pid).children(recursive=True)
            # By command line: buildah re-executes itself from memory (memfd:...).
            if not Path(p.cmdline()[0]).name.startswith("buildah")
        ]

    def main_server(self) -> psutil.Process:
        """The entrypoint's process (it execs `bentoml serve`): the container's
        main process, the one Kubernetes sends SIGTERM to."""
        ours = self.server_processes()
        pids = {p.pid for p in ours}
        [main] = [p for p in ours if p.ppid() not in pids]
        assert "serve" in main.cmdline(), main.cmdline()
        return main


@contextmanager
def run_entrypoint(working_container: str, image_config: dict, log_path: Path):
    """Run the image's ENTRYPOINT in the container on a free 127.0.0.1 port."""
    port = free_port()
    load_before = os.getloadavg()[0]
    command = [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--env",
        "BENTOML_HOST=127.0.0.1",
        "--env",
        f"BENTOML_PORT={port}",
        working_container,
        "--",
        *image_config["Entrypoint"],
        *(image_config.get("Cmd") or []),
    ]
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF)}
    # No network isolation here: the container shares the host's ports, so the
    # server can lose BentoML's own port race (see lost_port_race); start it again.
    for _ in range(START_ATTEMPTS):
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        ready = wait_ready(f"http://127.0.0.1:{port}", process, 60.0)
        if ready is not None or not lost_port_race(log_path.read_text(errors="replace")):
            break
        stop_tree(process)
    try:
        assert ready is not None, f"not ready in 60 s:\n{log_path.read_text()[-3000:]}"
        yield Served(f"http://127.0.0.1:{port}", process, ready - started, log_path, load_before)
    finally:
        stop_tree(process)


def stop_tree(process: subprocess.Popen) -> None:
    """Stop `buildah run` and everything under it, by PID. The server's processes
    are not in buildah's process group (buildah's chroot runtime starts them in a
    session of their own), so a signal to the group would orphan them."""
    if process.poll() is not None:
        return
    tree = psutil.Process(process.pid).children(recursive=True)
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(tree, timeout=15)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def served(working_container, image_config, rootfs, tmp_path_factory) -> Iterator[Served]:
    # Files the server writes are the ones newer than this marker (see the test).
    (rootfs / "tmp" / ".before-serving").touch()
    time.sleep(0.01)
    log_path = tmp_path_factory.mktemp("image") / "serve.log"
    with run_entrypoint(working_container, image_config, log_path) as server:
        yield server


def test_image_is_at_most_650_mb_uncompressed(image):
    layers = _layers_module().layer_sizes(image.reference)
    total = sum(size for size, _ in layers)
    report = "\n".join(f"{s / 1e6:7.1f} MB {made_by[:90]}" for s, made_by in layers)
    print(f"{image.reference}: {total / 1e6:.0f} MB\n{report}", file=sys.stderr)
    assert total <= MAX_IMAGE_BYTES, report


def test_image_declares_only_the_serving_port_a_numeric_user_and_its_settings(image_config):
    assert set(image_config["ExposedPorts"]) == {f"{SERVING_PORT}/tcp"}
    # Numbers, so that Kubernetes can check runAsNonRoot against the image.
    assert image_config["User"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    env = dict(item.split("=", 1) for item in image_config["Env"])
    assert env["BENTOML_DO_NOT_TRACK"] == "true"
    # One OpenMP thread per worker (the service's worker envs, carried into the image).
    assert env["OMP_NUM_THREADS"] == "1"
    pod = resource("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == pod["runAsGroup"] == RUNTIME_UID
    assert {p["containerPort"] for p in deployed_container()["ports"]} == {SERVING_PORT}


def test_image_has_no_compiler_git_apt_lists_or_test_folders(rootfs):
    present = [path for path in FORBIDDEN if (rootfs / path).exists()]
    assert not present
    assert not any((rootfs / "var/lib/apt/lists").glob("*_Packages*"))
    [site_packages] = (rootfs / VENV / "lib").glob("python3*/site-packages")
    assert (site_packages / "sklearn").is_dir()  # the check below looks in the right place
    assert not [p for p in site_packages.glob("*/tests") if p.is_dir()]


def test_app_is_owned_by_root_and_not_writable_by_others(rootfs):
    writable = []
    for path in [rootfs / "app", *(rootfs / "app").rglob("*")]:
        if path.is_symlink():
            continue
        info = path.lstat()
        if info.st_uid != 0 or info.st_mode & 0o022:
            writable.append(str(path.relative_to(rootfs)))
    assert not writable, writable[:20]


def test_container_answers_the_real_test_rows_like_the_in_process_pipeline(
    served, real_model, real_test_rows
):
    # 15 s on a machine with a core free per runnable job; on an oversubscribed one
    # (a developer machine shared with other test runs) every process gets only
    # its share of the cores, and the bound stretches by the same factor.
    contention = max(1.0, served.load_before / (os.cpu_count() or 1))
    print(f"ready in {served.ready_seconds:.1f} s (load {served.load_before:.1f})", file=sys.stderr)
    assert served.ready_seconds <= READY_WITHIN_S * contention, (
        served.ready_seconds,
        served.load_before,
    )
    assert len(real_test_rows) == 367
    # Every answer, and X-Model-Tag naming the packaged model.
    assert_serves_like_the_pipeline(served.url, real_test_rows, real_model)
    stored, _ = real_model
    response = httpx.post(f"{served.url}/predict", json={"applications": real_test_rows[:1]})
    assert response.headers[MODEL_TAG_HEADER] == str(stored.tag)


def test_server_runs_as_the_image_user_with_one_openmp_thread(served):
    processes = served.server_processes()
    assert processes, "no process of the image found under buildah run"
    for process in processes:
        uids, gids = process.uids(), process.gids()
        assert set(uids) == {RUNTIME_UID}, (process.cmdline(), uids)
        assert set(gids) == {RUNTIME_UID}, (process.cmdline(), gids)
    workers = [p for p in processes if "OMP_NUM_THREADS" in p.environ()]
    assert len(workers) >= 2, [p.cmdline() for p in processes]
    assert {p.environ()["OMP_NUM_THREADS"] for p in workers} == {"1"}


def test_the_image_user_cannot_write_the_venv(working_container, served):
    probe = (
        "import json, os, pathlib, sklearn\n"
        "site = pathlib.Path(sklearn.__file__).parent.parent\n"
        "denied = []\n"
        "for target, mode in ((site / 'planted.py', 'w'), (pathlib.Path(sklearn.__file__), 'a')):\n"
        "    try:\n"
        "        open(target, mode).close()\n"
        "    except PermissionError:\n"
        "        denied.append(str(target))\n"
        "print(json.dumps({'uid': os.getuid(), 'denied': denied}))\n"
    )
    output = buildah("run", "--isolation", "chroot", working_container, "--", "python", "-c", probe)
    result = json.loads(output.strip().splitlines()[-1])
    assert result["uid"] == RUNTIME_UID
    assert len(result["denied"]) == 2, result


def test_the_server_writes_only_where_the_deployment_mounts_emptydirs(served, rootfs):
    """The Deployment's read-only root filesystem leaves writable only its emptyDir
    mounts: everything the server wrote while serving must be under them."""
    assert httpx.get(f"{served.url}/metrics").status_code == 200
    marker = (rootfs / "tmp" / ".before-serving").stat().st_mtime
    # What buildah run itself puts into the container for the run (not the server):
    # /etc/hosts and resolv.conf, and mount points under /run.
    runtime_mounts = {"etc/hosts", "etc/resolv.conf", "etc/hostname", "run", "run/.containerenv"}
    written = sorted(
        str(p.relative_to(rootfs))
        for p in rootfs.rglob("*")
        if not p.is_symlink()
        and p.lstat().st_mtime > marker
        and p.relative_to(rootfs).parts[0] not in {"proc", "sys", "dev"}
        and str(p.relative_to(rootfs)) not in runtime_mounts
    )
    pod = resource("Deployment")["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [
        m["mountPath"].strip("/")
        for m in deployed_container()["volumeMounts"]
        if m["name"] in empty_dirs
    ]
    outside = [w for w in written if not any(w == m or w.startswith(m + "/") for m in writable)]
    assert written, "the server wrote nothing: the check would prove nothing"
    assert not outside, outside


def test_archive_holds_the_image_for_a_registry(image, image_config, bentoml_home, tmp_path):
    """`make image-archive`: the image as an OCI archive that skopeo can copy on."""
    bento = image.reference.rsplit(":", 1)[1]
    done = subprocess.run(
        [
            str(IMAGE_DIR / "archive.sh"),
            f"loan_approval_service:{bento}",
            IMAGE_NAME,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=_env(bentoml_home),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    archive = Path(done.stdout.strip().splitlines()[-1])
    assert archive.name == f"{IMAGE_NAME}-{bento}.oci.tar"
    inspected = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    archived = json.loads(inspected.stdout)["config"]
    for key in ("User", "Entrypoint", "Env", "ExposedPorts"):
        assert archived[key] == image_config[key], key


def test_sigterm_stops_the_container_within_the_grace_period(
    working_container, image_config, tmp_path
):
    grace = resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    with run_entrypoint(working_container, image_config, tmp_path / "serve.log") as server:
        main = server.main_server()
        everything = server.server_processes()
        sent = time.monotonic()
        main.send_signal(signal.SIGTERM)
        try:
            server.process.wait(grace)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {grace} s after SIGTERM:\n{server.log_path.read_text()}")
        stopped = time.monotonic() - sent
        print(f"stopped {stopped:.1f} s after SIGTERM", file=sys.stderr)
        assert not [p for p in everything if p.is_running()]
        assert server.process.returncode == 0, server.log_path.read_text()[-3000:]
