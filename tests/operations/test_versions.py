"""Model versions: list, show, compare two trained versions; serve an older one."""

from __future__ import annotations

import httpx
import pytest

from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations import versions
from loan_preprocessing.schema import EXAMPLE_APPLICATION, PROTECTED_ATTRIBUTES
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from tests.conftest import REAL_TRAINING_CSV, SAMPLE_CSV
from tests.support.server import bentoml_serve
from tests.support.trained import SAMPLE_SEED, sample_model_with_report


@pytest.fixture(scope="module")
def two_versions(real_model_tag) -> tuple[str, str]:
    """(older, newer): the real-data model, then one on the synthetic sample."""
    newer, _ = sample_model_with_report()
    return real_model_tag, newer


def test_list_shows_every_version_newest_first(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["tag", "created", "(UTC)"]
    (old_line,) = [line for line in lines if line.startswith(older + " ")]
    (new_line,) = [line for line in lines if line.startswith(newer + " ")]
    assert lines.index(new_line) < lines.index(old_line)
    metrics = get_model(older).info.metadata["metrics"]
    assert REAL_TRAINING_CSV.name in old_line and " 614 " in old_line
    assert f"{metrics['holdout_accuracy']:.3f}" in old_line
    assert f"{metrics['holdout_roc_auc']:.3f}" in old_line
    assert f"{metrics['holdout_brier']:.3f}" in old_line
    assert f"{metrics['classic_split_accuracy']:.3f}" in old_line
    audit = get_model(older).info.metadata["fairness"]["attributes"]
    for name in PROTECTED_ATTRIBUTES:
        assert f"AIR {name}" in lines[0]
        assert f"{audit[name]['adverse_impact_ratio']:.3f}" in old_line
    assert SAMPLE_CSV.name in new_line


def test_show_prints_metadata_and_the_report(two_versions, capsys):
    _, newer = two_versions
    assert versions.main(["show", newer.split(":")[1]]) == 0  # a bare version works too
    shown = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert shown["tag"] == newer
    assert shown["search.seed"] == str(SAMPLE_SEED)
    assert shown["training_data.file"] == SAMPLE_CSV.name
    assert "report/roc_curve.png" in shown["files"]
    assert "reference_profile.json" in shown["files"]
    assert "model_card.md" in shown["files"]
    assert "report/approval_by_group.png" in shown["files"]
    audit = get_model(newer).info.metadata["fairness"]["attributes"]
    for name, result in audit.items():
        key = f"fairness.attributes.{name}.adverse_impact_ratio"
        assert shown[key] == str(result["adverse_impact_ratio"])
        for group, values in result["groups"].items():
            prefix = f"fairness.attributes.{name}.groups.{group}"
            assert shown[f"{prefix}.count"] == str(values["count"])
            assert shown[f"{prefix}.approval_rate"] == str(values["approval_rate"])
    assert "Married" not in shown["model_inputs.fields"]
    assert shown["report"].endswith("report")


def test_compare_marks_what_differs(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["compare", older, newer]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:-1]:
        marked = line.startswith(versions.DIFFERS)
        key, *values = line.lstrip(versions.DIFFERS).split()
        rows[key] = (marked, values)
    assert rows["training_data.file"] == (True, [REAL_TRAINING_CSV.name, SAMPLE_CSV.name])
    assert rows["search.seed"][0] and rows["search.seed"][1][:2] == ["0", str(SAMPLE_SEED)]
    assert rows["training_data.sha256"][0]
    assert rows["versions.scikit-learn"][0] is False
    assert rows["threshold"] == (False, ["0.5", "0.5"])
    # The fields read differ when the two searches chose different candidates.
    chosen = [get_model(t).info.metadata["selection"]["chosen"] for t in (older, newer)]
    fields = [get_model(t).info.metadata["model_inputs"]["fields"] for t in (older, newer)]
    assert rows["model_inputs.fields"][0] is (fields[0] != fields[1])
    assert rows["selection.chosen"][0] is (chosen[0] != chosen[1])
    assert rows["selection.auc_tolerance"] == (False, ["0.005", "0.005"])
    for name in ("all-inputs", "without-Property_Area"):
        key = f"selection.frontier.{name}.roc_auc"
        assert key in out
    assert "proxy_test.predicts_protected_attribute.Gender.Property_Area" in out
    ratio = "fairness.attributes.Gender.adverse_impact_ratio"
    a, b = (get_model(t).info.metadata["fairness"]["attributes"]["Gender"] for t in (older, newer))
    assert rows[ratio][1][:2] == [str(a["adverse_impact_ratio"]), str(b["adverse_impact_ratio"])]
    a, b = (get_model(t).info.metadata["metrics"]["holdout_roc_auc"] for t in (older, newer))
    assert rows["metrics.holdout_roc_auc"][1] == [str(a), str(b), f"{b - a:+.4g}"]
    assert out.splitlines()[-1].endswith("differ besides tag and time")


def test_compare_differences_only(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["compare", older, newer, "--differences"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:-1]
    assert lines and all(line.startswith(versions.DIFFERS) for line in lines)


def test_an_unknown_version_is_a_clear_error(capsys):
    assert versions.main(["show", "loan_approval:doesnotexist"]) == 1
    assert "no model 'loan_approval:doesnotexist'" in capsys.readouterr().err


@pytest.mark.e2e
def test_rolling_back_serves_the_older_version(two_versions, tmp_path):
    """LOAN_MODEL_TAG=<older tag> serves the older model although a newer one exists."""
    older, newer = two_versions
    env = {"LOAN_MODEL_TAG": older, "LOAN_WORKERS": "1"}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        response = httpx.post(
            f"{server.url}/predict",
            json={"applications": [EXAMPLE_APPLICATION.model_dump()]},
            timeout=30,
        )
    assert response.status_code == 200
    assert response.headers[MODEL_TAG_HEADER] == older != newer
