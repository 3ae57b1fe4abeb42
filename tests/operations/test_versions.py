"""Model versions: list, show, compare two trained versions; serve an older one."""

from __future__ import annotations

import json

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
    # Both come from the whole search (a first model from `make serve` says first-model).
    assert " search " in lines[0] and " full " in old_line and " full " in new_line
    # Without LOAN_MODEL_TAG a server serves the newest: both marks on one line.
    assert new_line.split()[1] == "latest,serves"
    assert old_line.split()[1] != "latest,serves"


def test_list_marks_the_version_loan_model_tag_names(two_versions, capsys, monkeypatch):
    older, newer = two_versions
    monkeypatch.setenv("LOAN_MODEL_TAG", older)
    assert versions.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (old_line,) = [line for line in lines if line.startswith(older + " ")]
    (new_line,) = [line for line in lines if line.startswith(newer + " ")]
    assert old_line.split()[1] == "serves"
    assert new_line.split()[1] == "latest"


def shown_sections(out: str) -> dict[tuple[str, str], str]:
    """`show`'s output as {(heading, name): value}."""
    shown = {}
    heading = ""
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            heading = line
            continue
        name, value = line.split(None, 1)
        shown[heading, name] = value
    return shown


def test_show_prints_metadata_and_the_report_under_headings(two_versions, capsys):
    _, newer = two_versions
    assert versions.main(["show", newer.split(":")[1]]) == 0  # a bare version works too
    shown = shown_sections(capsys.readouterr().out)
    assert shown["version", "tag"] == newer
    assert shown["search", "seed"] == str(SAMPLE_SEED)
    assert shown["training data", "file"] == SAMPLE_CSV.name
    stored = shown["files", "stored"]
    for name in ("report/roc_curve.png", "reference_profile.json", "model_card.md"):
        assert name in stored
    assert "report/approval_by_group.png" in stored
    audit = get_model(newer).info.metadata["fairness"]["attributes"]
    for name, result in audit.items():
        key = f"attributes.{name}.adverse_impact_ratio"
        assert shown["fairness", key] == str(result["adverse_impact_ratio"])
        for group, values in result["groups"].items():
            prefix = f"attributes.{name}.groups.{group}"
            assert shown["fairness", f"{prefix}.count"] == str(values["count"])
            assert shown["fairness", f"{prefix}.approval_rate"] == str(values["approval_rate"])
    assert "Married" not in shown["model inputs", "fields"]
    assert shown["files", "report"].endswith("report")


def compare_rows(out: str) -> dict[str, tuple[bool, list[str]]]:
    rows = {}
    for line in out.splitlines()[1:-1]:
        marked = line.startswith(versions.DIFFERS)
        key, *values = line.lstrip(versions.DIFFERS).split()
        rows[key] = (marked, values)
    return rows


def test_compare_shows_what_differs_in_100_columns(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["compare", older, newer]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()[:-1]) <= versions.COMPARE_WIDTH
    rows = compare_rows(out)
    assert rows and all(marked for marked, _ in rows.values())
    assert rows["training_data.file"] == (True, [REAL_TRAINING_CSV.name, SAMPLE_CSV.name])
    assert rows["search.seed"][0] and rows["search.seed"][1][:2] == ["0", str(SAMPLE_SEED)]
    assert rows["training_data.sha256"][0]
    assert "versions.scikit-learn" not in rows  # the same in both
    # What the two searches chose shows only where they chose differently.
    chosen = [get_model(t).info.metadata["selection"]["chosen"] for t in (older, newer)]
    assert ("selection.chosen" in rows) is (chosen[0] != chosen[1])
    assert "selection.auc_tolerance" not in rows  # both 0.005
    ratio = "fairness.Gender.adverse_impact_ratio"
    a, b = (get_model(t).info.metadata["fairness"]["attributes"]["Gender"] for t in (older, newer))
    assert rows[ratio][1][:2] == [str(a["adverse_impact_ratio"]), str(b["adverse_impact_ratio"])]
    a, b = (get_model(t).info.metadata["metrics"]["holdout_roc_auc"] for t in (older, newer))
    assert rows["metrics.holdout_roc_auc"][1] == [str(a), str(b), f"{b - a:+.4g}"]
    assert "differ besides tag and time" in out.splitlines()[-1]


def test_compare_all_marks_what_differs(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["compare", older, newer, "--all"]) == 0
    rows = compare_rows(capsys.readouterr().out)
    assert rows["versions.scikit-learn"][0] is False
    assert rows["threshold"] == (False, ["0.5", "0.5"])
    # The fields read differ when the two searches chose different candidates.
    fields = [get_model(t).info.metadata["model_inputs"]["fields"] for t in (older, newer)]
    assert rows["model_inputs.fields"][0] is (fields[0] != fields[1])
    assert rows["selection.auc_tolerance"] == (False, ["0.005", "0.005"])
    assert rows["training_data.file"][0] is True


def test_compare_json_has_every_value_whole(two_versions, capsys):
    older, newer = two_versions
    assert versions.main(["compare", older, newer, "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    sha = "training_data.sha256"
    assert compared[sha]["a"] == get_model(older).info.metadata["training_data"]["sha256"]
    assert len(compared[sha]["b"]) == 64
    assert compared["tag"] == {"a": older, "b": newer}


def test_compare_cuts_long_values_to_fit():
    assert versions._cut("abcdefgh", 5) == "abcd~"
    assert versions._cut("fairness.Gender.Male.count", 12, from_start=True) == "~.Male.count"
    assert versions.short_key("fairness.attributes.Gender.groups.Male.count") == (
        "fairness.Gender.Male.count"
    )


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
