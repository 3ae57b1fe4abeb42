"""The training report: its numbers, its plots, and where train.py puts it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from loan_preprocessing.data import features_and_target, read_applications
from loan_preprocessing.model.features import build_pipeline
from loan_preprocessing.model.search import CANDIDATES, search_candidates
from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations.alternatives import cutoff_curve, score_frontier, select
from loan_preprocessing.operations.drift import PROFILE_FILE
from loan_preprocessing.operations.fairness import AUDITED_ATTRIBUTES, FAIRNESS_KEY, audit_decisions
from loan_preprocessing.operations.report import (
    APPROVAL_BY_GROUP_FILE,
    CUTOFF_FILE,
    FRONTIER_FILE,
    METRICS_FILE,
    REPORT_FILES,
    STORE_REPORT_DIR,
    Holdout,
    build_report,
    draw_figures,
    write_report,
)
from loan_preprocessing.schema import FEATURE_COLUMNS
from tests.conftest import SAMPLE_CSV
from tests.support.trained import sample_model_with_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_report():
    """A report of a quickly fitted pipeline (no search) on the synthetic sample."""
    features, target = features_and_target(read_applications(SAMPLE_CSV))
    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=0.2, stratify=target, random_state=0
    )
    pipeline = build_pipeline(HistGradientBoostingClassifier(max_iter=30, random_state=0))
    pipeline.fit(train_x, train_y)
    probabilities = pipeline.predict_proba(test_x)[:, 1]
    holdout = Holdout(pipeline, test_x, test_y, probabilities)
    audit = audit_decisions(test_x, probabilities >= 0.5, test_y, seed=0, source="held out")
    # A real frontier of two candidates, searched on the held-out rows only (quick).
    searched = search_candidates(test_x, test_y, seed=0, candidates=CANDIDATES[:2])
    selection = select(score_frontier(test_x, test_y, searched, 0.5, seed=0))
    cutoff = cutoff_curve(searched[0].out_of_fold, test_y, 0.5)
    return build_report(
        holdout,
        0.5,
        {"holdout_roc_auc": 0.8},
        seed=0,
        fairness=audit,
        selection=selection,
        cutoff=cutoff,
    )


def test_summary_counts_add_up(small_report):
    holdout = small_report.summary["holdout"]
    assert sum(holdout["confusion_matrix"].values()) == holdout["rows"] == 123
    decided = int((small_report.probabilities >= 0.5).sum())
    assert holdout["confusion_matrix"]["tp"] + holdout["confusion_matrix"]["fp"] == decided


def test_permutation_importance_is_over_the_raw_input_columns(small_report):
    assert set(small_report.importance.index) == set(FEATURE_COLUMNS)
    assert set(small_report.summary["permutation_importance"]["mean"]) == set(FEATURE_COLUMNS)
    # Credit history dominates the synthetic sample as it does the real data.
    assert small_report.importance.index[0] == "Credit_History"


def test_every_plot_is_titled_and_labelled(small_report):
    figures = draw_figures(small_report, "loan_approval:abc123")
    assert set(figures) == set(REPORT_FILES) - {METRICS_FILE}
    for name, figure in figures.items():
        assert figure.get_suptitle() == "loan_approval:abc123", name
        (ax,) = figure.axes
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), name


def test_approval_by_group_plot_has_a_bar_per_group_with_its_interval(small_report):
    figure = draw_figures(small_report, "title")[APPROVAL_BY_GROUP_FILE]
    (ax,) = figure.axes
    attributes = small_report.fairness["attributes"]
    expected = [
        f"{name} = {group} (n={values['count']:.0f})"
        for name, result in attributes.items()
        for group, values in result["groups"].items()
    ]
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    assert {name for name in AUDITED_ATTRIBUTES} == set(attributes)
    bars = sorted(ax.patches, key=lambda bar: -bar.get_y())  # top first, as listed
    rates = [v["approval_rate"] for r in attributes.values() for v in r["groups"].values()]
    assert [bar.get_width() for bar in bars] == pytest.approx(rates)


def test_write_report_writes_json_and_pngs(small_report, tmp_path):
    written = write_report(small_report, tmp_path / "v1", "title", model_tag="loan_approval:v1")
    assert [p.name for p in written] == list(REPORT_FILES)
    summary = json.loads((tmp_path / "v1" / METRICS_FILE).read_text())
    assert summary["model_tag"] == "loan_approval:v1"
    assert summary["threshold"] == 0.5
    assert summary["fairness"] == small_report.fairness
    assert summary["selection"]["chosen"] == small_report.selection["chosen"]
    assert summary["cutoff"] == small_report.cutoff
    for path in written[1:]:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def trained(real_model_tag_or_none) -> tuple[str, Path]:
    return sample_model_with_report()


def test_training_writes_the_report_into_report_dir_and_the_model(trained):
    tag, report_dir = trained
    model = get_model(tag)
    in_store = Path(model.path_of(STORE_REPORT_DIR))
    for name in REPORT_FILES:
        assert (report_dir / name).is_file(), name
        assert (in_store / name).is_file(), name
    assert Path(model.path_of(PROFILE_FILE)).is_file()
    local = json.loads((report_dir / METRICS_FILE).read_text())
    stored = json.loads((in_store / METRICS_FILE).read_text())
    assert local["model_tag"] == tag and tag in local["title"]
    # The same numbers travel with the model; they are the ones in its metadata.
    assert local["metrics"] == stored["metrics"] == model.info.metadata["metrics"]
    assert local["fairness"] == stored["fairness"] == model.info.metadata[FAIRNESS_KEY]
    assert local["holdout"]["rows"] == stored["holdout"]["rows"] == 123
    assert np.isclose(
        local["permutation_importance"]["mean"]["Credit_History"],
        stored["permutation_importance"]["mean"]["Credit_History"],
    )


def test_the_frontier_plot_has_every_candidate_and_marks_the_chosen_one(small_report):
    figure = draw_figures(small_report, "title")[FRONTIER_FILE]
    (ax,) = figure.axes
    frontier = small_report.selection["frontier"]
    assert {t.get_text() for t in ax.texts} == set(frontier)
    points = [c.get_offsets()[0].tolist() for c in ax.collections if len(c.get_offsets())]
    expected = [[p["roc_auc"], p["min_protected_adverse_impact_ratio"]] for p in frontier.values()]
    assert sorted(points) == sorted(expected)
    chosen = frontier[small_report.selection["chosen"]]
    labelled = [c for c in ax.collections if c.get_label() == "chosen"]
    assert [c.get_offsets()[0].tolist() for c in labelled] == [
        [chosen["roc_auc"], chosen["min_protected_adverse_impact_ratio"]]
    ]


def test_the_cutoff_plot_marks_the_recorded_cutoff(small_report):
    figure = draw_figures(small_report, "title")[CUTOFF_FILE]
    (ax,) = figure.axes
    curve = small_report.cutoff["curve"]
    approval = ax.lines[0].get_xydata().tolist()
    assert approval == [[p["cutoff"], p["approval_rate"]] for p in curve]
    assert any(
        line.get_xdata()[0] == small_report.cutoff["value"] for line in ax.lines[2:]
    )  # the vertical line at the cutoff
