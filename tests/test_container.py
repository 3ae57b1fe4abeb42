"""The container a built Bento becomes, checked from its build context: the
generated Dockerfile (BentoML's, with every block replaced by
deploy/image/Dockerfile.j2) and locked requirements agree with the model's
recorded versions and with the Kubernetes manifests, and `bentoml export` yields
a complete build context, the model files included. tests/test_image.py builds
that Dockerfile into an image and runs it.

Where the model goes: the Bento in the store ($BENTOML_HOME/bentos/...) holds no
models/ folder; its bento.yaml only names the model. `bentoml containerize`
copies the Bento into a temporary build context and resolves each model into
models/ there, and `bentoml export` (Bento.export in BentoML 1.4) resolves them
into the Bento's folder for the time of the export, so the archive carries
models/<name>/<version>/ and the store's Bento is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Final

import pytest

from loan_preprocessing.model.store import MODEL_NAME, PIPELINE_FILE
from tests.support.server import ROOT

BENTOML: Final = str(Path(sys.executable).with_name("bentoml"))
SERVICE_REQUIREMENTS: Final = ROOT / "requirements" / "service.txt"
DOCKERFILE: Final = "env/docker/Dockerfile"
LOCKED_REQUIREMENTS: Final = "env/python/requirements.txt"
TELEMETRY_ENV: Final = "BENTOML_DO_NOT_TRACK"
PIN: Final = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$", re.M)


def _env() -> dict[str, str]:
    return {**os.environ, TELEMETRY_ENV: "true"}


@pytest.fixture(scope="module")
def bento_dir(built_bento, bentoml_home) -> Path:
    name, version = built_bento.split(":")
    return bentoml_home / "bentos" / name / version


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_base_image_python_is_the_one_that_trained_the_model(bento_dir, real_model):
    stored, _ = real_model
    trained = ".".join(stored.info.metadata["versions"]["python"].split(".")[:2])
    bases = [
        args
        for word, args in dockerfile_instructions((bento_dir / DOCKERFILE).read_text())
        if word == "FROM"
    ]
    # The venv is built in one stage and copied into the other: the same Python.
    assert len(bases) == 2, bases
    for base in bases:
        assert re.match(rf"python:{re.escape(trained)}(-|\s|$)", base), base


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per build stage."""
    found: list[list[tuple[str, str]]] = []
    for word, args in dockerfile_instructions(text):
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, args))
    return found


def test_final_stage_installs_nothing_and_takes_only_the_venv(bento_dir):
    builder, final = stages((bento_dir / DOCKERFILE).read_text())
    final_text = " ".join(args for _, args in final)
    # No apt-get, so no compiler, git or package lists; no pip or uv either.
    for tool in ("apt-get", "pip", "uv", "build-essential", "git"):
        assert not re.search(rf"\b{tool}\b", final_text), tool
    copies = [args for word, args in final if word == "COPY"]
    builder_name = builder[0][1].split()[-1]
    assert f"--from={builder_name} /app/.venv /app/.venv" in copies
    # Nothing of the Bento is handed to the runtime user (BentoML's own
    # template copies everything with --chown=bentoml).
    assert not [c for c in copies if "--chown" in c]


def test_locked_requirements_are_the_training_versions(bento_dir, real_model):
    stored, _ = real_model
    locked = dict(PIN.findall((bento_dir / LOCKED_REQUIREMENTS).read_text()))
    assert locked["scikit-learn"] == stored.info.metadata["versions"]["scikit-learn"]
    # Every direct pin of the service is installed at exactly that version.
    for package, version in PIN.findall(SERVICE_REQUIREMENTS.read_text()):
        assert locked.get(package) == version, package


def test_image_has_telemetry_off_one_openmp_thread_and_a_non_root_user(bento_dir):
    from tests.test_kubernetes import resource

    instructions = dockerfile_instructions((bento_dir / DOCKERFILE).read_text())
    assert ("ARG", f"{TELEMETRY_ENV}=true") in instructions
    assert ("ENV", f"{TELEMETRY_ENV}=${TELEMETRY_ENV}") in instructions
    assert ("ARG", "OMP_NUM_THREADS=1") in instructions
    users = [args for word, args in instructions if word == "USER"]
    # uid:gid as numbers, so that Kubernetes can check runAsNonRoot against it.
    uid, gid = users[-1].split(":")
    assert int(uid) != 0 and int(gid) != 0, users
    assert ("ARG", f"BENTO_USER_UID={uid}") in instructions
    # The user the Deployment runs as is this image's.
    pod = resource("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    assert any(word == "ENTRYPOINT" for word, _ in instructions)


def test_image_exposes_only_the_port_the_deployment_uses(bento_dir):
    from tests.test_kubernetes import container

    exposed = {
        int(args.split("/")[0])
        for word, args in dockerfile_instructions((bento_dir / DOCKERFILE).read_text())
        if word == "EXPOSE"
    }
    assert {p["containerPort"] for p in container()["ports"]} == exposed


def test_store_bento_has_no_models_but_names_the_model(bento_dir, real_model):
    stored, _ = real_model
    assert not (bento_dir / "models").exists()
    assert str(stored.tag) in (bento_dir / "bento.yaml").read_text()


@pytest.mark.parametrize("suffix", [".bento", ".tar"])
def test_export_is_a_complete_build_context_with_the_model(
    suffix, built_bento, bento_dir, real_model, tmp_path
):
    stored, _ = real_model
    archive = tmp_path / f"loan_approval_service{suffix}"
    result = subprocess.run(
        [BENTOML, "export", built_bento, str(archive)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    unpacked = tmp_path / "context"
    with tarfile.open(archive) as tar:  # .bento is a tar.xz
        tar.extractall(unpacked, filter="data")
    for needed in (DOCKERFILE, LOCKED_REQUIREMENTS, "bento.yaml", "src/service.py"):
        assert (unpacked / needed).is_file(), needed
    model_dir = unpacked / "models" / MODEL_NAME / stored.tag.version
    pipeline = model_dir / PIPELINE_FILE
    assert pipeline.is_file(), sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*"))
    recorded = stored.info.metadata["artifact"]["sha256"]
    assert hashlib.sha256(pipeline.read_bytes()).hexdigest() == recorded
    # Export puts the models in the store's Bento only while it runs.
    assert not (bento_dir / "models").exists()


def test_exported_model_loads_with_the_store_checks(built_bento, real_model, tmp_path):
    """The exported model directory is a model the service can load and verify."""
    import bentoml

    from loan_preprocessing.model.features import to_feature_frame
    from loan_preprocessing.model.store import load_pipeline
    from loan_preprocessing.schema import EXAMPLE_APPLICATION

    stored, pipeline = real_model
    folder = bentoml.export_bento(built_bento, f"{tmp_path}/bento/", output_format="folder")
    exported = bentoml.Model.from_path(Path(folder) / "models" / MODEL_NAME / stored.tag.version)
    assert exported.tag == stored.tag
    frame = to_feature_frame([EXAMPLE_APPLICATION.model_dump()])
    assert (
        load_pipeline(exported).predict_proba(frame).tolist()
        == pipeline.predict_proba(frame).tolist()
    )
