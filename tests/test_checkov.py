"""The Kubernetes base scanned with checkov, offline, as a platform team would:

    checkov -d deploy/kubernetes --framework kubernetes --skip-download

No finding may be left unexplained: every policy either passes or is skipped in
the manifest (a `checkov.io/skipN` annotation) with its reason. checkov is
pinned in requirements/checkov.txt and lives in .venv-checkov (`make venv`),
because its dependencies clash with the project's test pins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.support.server import ROOT

CHECKOV: Final = ROOT / ".venv-checkov" / "bin" / "checkov"
MANIFEST_DIR: Final = ROOT / "deploy" / "kubernetes"
# A reason says why in a sentence, not just "n/a".
MIN_REASON_CHARS: Final = 40


def scan(directory: Path) -> dict[str, Any]:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} missing: run `make venv` (it installs requirements/checkov.txt)")
    done = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Exit code 1 means "findings"; anything else that is not 0 is a broken run.
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return scan(MANIFEST_DIR)


def test_no_policy_fails(report):
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']}, {c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 80


def test_every_skipped_policy_says_why(report):
    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) >= MIN_REASON_CHARS, (check["check_id"], reason)
    # The skips are few and deliberate: a new one is a reviewed change here too.
    assert sorted(c["check_id"] for c in skipped) == ["CKV_K8S_11", "CKV_K8S_43"]


def test_the_scan_finds_what_the_base_fixed(tmp_path):
    """Without the read-only root filesystem and the NetworkPolicy, the same scan
    fails: the tests above would see a regression."""
    for path in MANIFEST_DIR.glob("*.yaml"):
        if path.name != "networkpolicy.yaml":
            shutil.copy(path, tmp_path / path.name)
    deployment = yaml.safe_load((tmp_path / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    failed = {c["check_id"] for c in scan(tmp_path)["results"]["failed_checks"]}
    assert failed == {"CKV_K8S_22", "CKV2_K8S_6"}
