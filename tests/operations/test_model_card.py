"""The model card stored with every version, and `versions show --card`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loan_preprocessing.explanations.reasons import METADATA_KEY as REASONS_METADATA_KEY
from loan_preprocessing.explanations.reasons import MIN_REASON_LOG_ODDS
from loan_preprocessing.model.features import NOT_MODEL_INPUTS
from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations import versions
from loan_preprocessing.operations.fairness import AUDITED_ATTRIBUTES, FAIRNESS_KEY
from loan_preprocessing.operations.model_card import (
    CARD_FILE,
    FAIRNESS_AUDIT,
    FAIRNESS_BY_GROUP,
    HOW_DECISIONS_ARE_EXPLAINED,
    KNOWN_DATA_SETS,
    SECTIONS,
    SYNTHETIC_DATA,
)
from loan_preprocessing.reason_codes import REASON_CODES
from tests.conftest import REAL_TRAINING_CSV, SAMPLE_CSV
from tests.support.trained import SAMPLE_SEED, sample_model_with_report


@pytest.fixture(scope="module")
def sample_card(real_model_tag_or_none) -> tuple[str, str]:
    tag, _ = sample_model_with_report()
    return tag, Path(get_model(tag).path_of(CARD_FILE)).read_text(encoding="utf-8")


def _cell(text: str) -> re.Pattern:
    """A table cell holding exactly `text` (PrettyTable pads cells to centre them)."""
    return re.compile(rf"\|\s*{re.escape(text)}\s*\|")


def _section(card: str, title: str) -> str:
    """The text of the section headed `title`, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", card, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_card_has_every_section_in_order(sample_card):
    _, card = sample_card
    headings = re.findall(r"^#+ (.+)$", card, re.M)
    positions = [headings.index(title) for title in SECTIONS]
    assert positions == sorted(positions)


def test_the_card_says_what_the_model_reads_and_what_it_does_not(sample_card):
    tag, card = sample_card
    metadata = get_model(tag).info.metadata
    used = _section(card, "Fields used")
    for field in metadata["model_inputs"]["fields"]:
        assert _cell(field).search(used), field
    not_used = _section(card, "Fields deliberately not used")
    for field, why in NOT_MODEL_INPUTS.items():
        assert re.search(rf"\|\s*{field}\s*\|\s*{re.escape(why)}\s*\|", not_used), field
        assert not _cell(field).search(used)


def test_the_card_carries_the_metrics_audit_threshold_and_data(sample_card):
    tag, card = sample_card
    metadata = get_model(tag).info.metadata
    metrics = _section(card, "Metrics")
    for name in ("classic_split_accuracy", "cv_accuracy", "cv_roc_auc", "holdout_roc_auc"):
        value = f"{metadata['metrics'][name]:.3f}"
        assert re.search(rf"\|\s*{name}\s*\|\s*{value}\s*\|", metrics), name
    audit = metadata[FAIRNESS_KEY]
    groups = _section(card, FAIRNESS_BY_GROUP)
    for name, result in audit["attributes"].items():
        for group, values in result["groups"].items():
            cells = (name, group, f"{values['count']:.0f}", f"{values['approval_rate']:.3f} (")
            assert re.search(r"\s*\|\s*".join(map(re.escape, cells)), groups), (name, group)
    gaps = _section(card, FAIRNESS_AUDIT)
    for name in AUDITED_ATTRIBUTES:
        ratio = audit["attributes"][name]["adverse_impact_ratio"]
        assert re.search(rf"\|\s*{name}\s*\|.*\|\s*{ratio:.3f} \(", gaps), name
    assert "report/approval_by_group.png" in card
    assert f"P(Y) >= {metadata['threshold']:g}" in _section(card, "Decision threshold")
    data = _section(card, "Training data")
    assert SYNTHETIC_DATA in data and metadata["training_data"]["sha256"] in data
    assert f"rows: {metadata['training_data']['rows']}" in data
    retrain = _section(card, "How to retrain")
    assert f"--data {SAMPLE_CSV.name} --seed {SAMPLE_SEED}" in retrain
    assert "614 rows" in _section(card, "Known limitations")


def test_the_card_explains_the_reasons_and_lists_every_code(sample_card):
    tag, card = sample_card
    explained = _section(card, HOW_DECISIONS_ARE_EXPLAINED)
    assert get_model(tag).info.metadata[REASONS_METADATA_KEY]["selection"] in explained
    assert f"at least {MIN_REASON_LOG_ODDS:g}" in explained
    for reason in REASON_CODES:
        fields = ", ".join(f"`{f}`" for f in reason.fields)
        assert f"| `{reason.code}` | {reason.text} | {fields} |" in explained, reason.code


def test_the_real_data_is_recognised(real_model_tag):
    card = Path(get_model(real_model_tag).path_of(CARD_FILE)).read_text(encoding="utf-8")
    assert KNOWN_DATA_SETS[next(iter(KNOWN_DATA_SETS))] in _section(card, "Training data")
    assert REAL_TRAINING_CSV.name in card


def test_versions_show_card_prints_it(sample_card, capsys):
    tag, card = sample_card
    assert versions.main(["show", tag, "--card"]) == 0
    assert capsys.readouterr().out == card + "\n"


@pytest.mark.e2e
def test_the_card_travels_into_the_bento(built_bento, real_model, tmp_path):
    """A built Bento references its model; exporting it (what `bentoml containerize`
    and air-gapped builds ship) carries the model's folder, card included."""
    import bentoml

    stored, _ = real_model
    folder = bentoml.export_bento(built_bento, f"{tmp_path}/bento/", output_format="folder")
    packaged = Path(folder) / "models" / stored.tag.name / stored.tag.version / CARD_FILE
    assert packaged.read_text() == Path(stored.path_of(CARD_FILE)).read_text()
