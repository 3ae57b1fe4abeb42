"""The three model-risk reports against the same figures computed independently,
row by row, on seeded tables (tests/operations/model_risk/tables.py)."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from loan_preprocessing.operations.model_risk.challenger import challenger_report, format_challenger
from loan_preprocessing.operations.model_risk.outcomes import (
    SELECTION_BIAS,
    format_outcomes,
    outcomes_report,
)
from loan_preprocessing.operations.model_risk.overrides import format_overrides, overrides_report
from tests.operations.model_risk.tables import (
    auc_pairs,
    final_status_by_id,
    make_tables,
    outcome_by_id,
    psi,
    records,
    tenths,
)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_tables()


def _approved_performing(tables, tag=None, period=None):
    final = final_status_by_id(tables)
    outcome = outcome_by_id(tables)
    rows = []
    for d in records(tables["decisions"]):
        if tag is not None and d["model_tag"] != tag:
            continue
        if period is not None and d["decided_at"].strftime("%Y-%m") != period:
            continue
        if final[d["decision_id"]] == "Y" and outcome.get(d["decision_id"]) in {
            "repaid",
            "delinquent",
            "defaulted",
        }:
            rows.append((d, outcome[d["decision_id"]]))
    return rows


def test_outcomes_report_matches_independent_figures(tables):
    report = outcomes_report(
        tables["decisions"], tables["outcomes"], tables["overrides"], window="M"
    )
    final = final_status_by_id(tables)
    outcome = outcome_by_id(tables)
    decisions = records(tables["decisions"])
    assert report["selection_bias"] == SELECTION_BIAS
    assert "only for approved applications" in report["selection_bias"]
    assert report["decisions"] == len(decisions)
    assert report["decisions_without_outcome"] == sum(
        d["decision_id"] not in outcome for d in decisions
    )
    assert report["approved_without_outcome"] == sum(
        final[d["decision_id"]] == "Y" and d["decision_id"] not in outcome for d in decisions
    )
    assert set(report["versions"]) == {"loan_approval:aaa", "loan_approval:bbb"}
    overridden_ids = set(tables["overrides"]["decision_id"])
    for tag, version in report["versions"].items():
        mine = [d for d in decisions if d["model_tag"] == tag]
        approved = [d for d in mine if final[d["decision_id"]] == "Y"]
        with_outcome = [d for d in approved if d["decision_id"] in outcome]
        performing = _approved_performing(tables, tag)
        bad = [o in {"delinquent", "defaulted"} for _, o in performing]
        assert version["decisions"] == len(mine)
        assert version["approved"] == len(approved)
        assert version["overridden"] == sum(d["decision_id"] in overridden_ids for d in mine)
        assert version["approved_with_outcome"] == len(with_outcome)
        assert version["withdrawn"] == sum(
            outcome[d["decision_id"]] == "withdrawn" for d in with_outcome
        )
        assert version["with_repayment_outcome"] == len(performing)
        assert version["overridden_with_outcome"] == sum(
            d["decision_id"] in overridden_ids for d, _ in performing
        )
        assert version["bad_rate"] == pytest.approx(sum(bad) / len(bad), abs=1e-4)
        good = [0 if b else 1 for b in bad]
        scores = [d["probability"] for d, _ in performing]
        assert version["roc_auc"] == pytest.approx(auc_pairs(good, scores), abs=1e-4)
        # Calibration: per tenth of P(Y), the mean P(Y) and the repaid share.
        by_bin: dict[int, list[tuple[float, int]]] = {}
        for s, g in zip(scores, good, strict=True):
            by_bin.setdefault(min(int(s * 10), 9), []).append((s, g))
        table = {round(b["bin"][0] * 10): b for b in version["calibration"]["bins"]}
        assert set(table) == set(by_bin)
        for index, members in by_bin.items():
            assert table[index]["count"] == len(members)
            assert table[index]["mean_probability"] == pytest.approx(
                sum(s for s, _ in members) / len(members), abs=1e-4
            )
            assert table[index]["repaid_rate"] == pytest.approx(
                sum(g for _, g in members) / len(members), abs=1e-4
            )
        brier = sum((s - g) ** 2 for s, g in zip(scores, good, strict=True)) / len(scores)
        assert version["calibration"]["brier"] == pytest.approx(brier, abs=1e-4)
        # By group: bad rate, its count and an interval around it.
        for level in ("Male", "Female"):
            members = [o for d, o in performing if d["Gender"] == level]
            figures = version["by_group"]["Gender"][level]
            rate = sum(o != "repaid" for o in members) / len(members)
            assert figures["count"] == len(members)
            assert figures["bad_rate"] == pytest.approx(rate, abs=1e-4)
            low, high = figures["bad_rate_interval"]
            half_width = 1.96 * (rate * (1 - rate) / len(members)) ** 0.5
            assert low < rate < high
            assert (high - low) == pytest.approx(2 * half_width, rel=0.25)
        # Windows: per month of decisions, PSI of the scores against the first month.
        periods = sorted({d["decided_at"].strftime("%Y-%m") for d in mine})
        assert [w["period"] for w in version["windows"]] == periods
        baseline = tenths(
            [d["probability"] for d in mine if d["decided_at"].strftime("%Y-%m") == periods[0]]
        )
        for window in version["windows"]:
            in_window = [d for d in mine if d["decided_at"].strftime("%Y-%m") == window["period"]]
            assert window["decisions"] == len(in_window)
            expected = psi(baseline, tenths([d["probability"] for d in in_window]))
            assert window["score_psi"] == pytest.approx(expected, abs=1e-4)
            performing_w = _approved_performing(tables, tag, window["period"])
            bad_w = [o != "repaid" for _, o in performing_w]
            assert window["bad_rate"] == pytest.approx(sum(bad_w) / len(bad_w), abs=1e-4)
        assert version["windows"][0]["score_psi"] == 0.0
    text = format_outcomes(report)
    assert SELECTION_BIAS in text and "loan_approval:bbb" in text
    json.dumps(report)  # plain JSON data


def test_outcomes_report_window_bounds_and_no_outcomes(tables):
    start, end = pd.Timestamp("2026-02-01", tz="UTC"), pd.Timestamp("2026-03-01", tz="UTC")
    empty = tables["outcomes"].iloc[0:0]
    report = outcomes_report(
        tables["decisions"], empty, tables["overrides"].iloc[0:0], start=start, end=end
    )
    in_range = [d for d in records(tables["decisions"]) if start <= d["decided_at"] < end]
    assert report["decisions"] == len(in_range) == report["decisions_without_outcome"]
    assert report["approved_without_outcome"] == sum(d["Loan_Status"] == "Y" for d in in_range)
    for version in report["versions"].values():
        assert version["bad_rate"] is None and version["roc_auc"] is None
        assert [w["period"] for w in version["windows"]] == ["2026-02"]


def test_overrides_report_matches_independent_figures(tables):
    report = overrides_report(tables["decisions"], tables["overrides"])
    decisions = records(tables["decisions"])
    final = final_status_by_id(tables)
    changed = {
        d["decision_id"]: f"{d['Loan_Status']}->{final[d['decision_id']]}"
        for d in decisions
        if final[d["decision_id"]] != d["Loan_Status"]
    }
    assert report["overridden"] == len(changed)
    assert report["overrides_logged"] == len(tables["overrides"])
    for label, model_status in (("N->Y", "N"), ("Y->N", "Y")):
        eligible = [d for d in decisions if d["Loan_Status"] == model_status]
        count = sum(changed.get(d["decision_id"]) == label for d in eligible)
        assert report["by_direction"][label]["overrides"] == count
        assert report["by_direction"][label]["rate"] == pytest.approx(
            count / len(eligible), abs=1e-4
        )
        for tag in ("loan_approval:aaa", "loan_approval:bbb"):
            mine = [d for d in eligible if d["model_tag"] == tag]
            n = sum(changed.get(d["decision_id"]) == label for d in mine)
            assert report["versions"][tag][label]["rate"] == pytest.approx(n / len(mine), abs=1e-4)
        for level in ("Urban", "Semiurban", "Rural"):
            mine = [d for d in eligible if d["Property_Area"] == level]
            n = sum(changed.get(d["decision_id"]) == label for d in mine)
            group = report["by_group"]["Property_Area"][label][level]
            assert group["count"] == len(mine)
            assert group["rate"] == pytest.approx(n / len(mine), abs=1e-4)
    # The restated decision's latest override changes nothing, so its earlier
    # rationale is not counted; the texts are counted case-insensitively.
    last: dict[str, str] = {}
    for row in tables["overrides"].sort_values("overridden_at").itertuples():
        last[row.decision_id] = row.rationale
    expected = Counter(last[i].strip().lower() for i in changed)
    assert report["rationales"] == dict(expected.most_common(10))
    assert "second look" not in report["rationales"]
    assert "N->Y" in format_overrides(report)
    json.dumps(report)


def test_challenger_report_matches_independent_figures(tables):
    report = challenger_report(
        tables["decisions"], tables["challenger"], tables["outcomes"], tables["overrides"]
    )
    decisions = {d["decision_id"]: d for d in records(tables["decisions"])}
    shadow = {
        c["decision_id"]: c
        for c in records(tables["challenger"])
        if isinstance(c["Loan_Status"], str)
    }
    assert report["compared"] == len(shadow) == len(decisions) - 10
    assert report["not_scored_by_challenger"] == 10
    flips = Counter(f"{decisions[i]['Loan_Status']}->{c['Loan_Status']}" for i, c in shadow.items())
    assert report["flips"]["N->Y"]["count"] == flips["N->Y"]
    assert report["flips"]["Y->N"]["count"] == flips["Y->N"]
    for example in report["flips"]["N->Y"]["examples"]:
        assert decisions[example["decision_id"]]["Loan_Status"] == "N"
        assert shadow[example["decision_id"]]["Loan_Status"] == "Y"
        assert example["Loan_ID"] == decisions[example["decision_id"]]["Loan_ID"]
    champion_rate = sum(decisions[i]["Loan_Status"] == "Y" for i in shadow) / len(shadow)
    challenger_rate = sum(c["Loan_Status"] == "Y" for c in shadow.values()) / len(shadow)
    assert report["approval_rate"]["champion"] == pytest.approx(champion_rate, abs=1e-4)
    assert report["approval_rate"]["challenger"] == pytest.approx(challenger_rate, abs=1e-4)
    for name, levels in (
        ("Married", ["Yes", "No"]),
        ("Property_Area", ["Urban", "Semiurban", "Rural"]),
    ):
        rates = {}
        for who in ("champion", "challenger"):
            rates[who] = {}
            for level in levels:
                members = [i for i in shadow if decisions[i][name] == level]
                status = (
                    (lambda i: decisions[i]["Loan_Status"])
                    if who == "champion"
                    else (lambda i: shadow[i]["Loan_Status"])
                )
                rates[who][level] = sum(status(i) == "Y" for i in members) / len(members)
                assert report["by_group"][name][who][level]["rate"] == pytest.approx(
                    rates[who][level], abs=1e-4
                )
            air = min(rates[who].values()) / max(rates[who].values())
            assert report["by_group"][name]["adverse_impact_ratio"][who] == pytest.approx(
                air, abs=1e-4
            )
        for level in levels:
            assert report["by_group"][name]["change"][level] == pytest.approx(
                rates["challenger"][level] - rates["champion"][level], abs=1e-4
            )
    champion_reasons = Counter(
        code
        for i in shadow
        if decisions[i]["Loan_Status"] == "N"
        for code in decisions[i]["reasons"].split(";")
    )
    challenger_reasons = Counter(
        code for c in shadow.values() if c["Loan_Status"] == "N" for code in c["reasons"].split(";")
    )
    assert report["reasons"]["champion"] == dict(champion_reasons)
    assert report["reasons"]["challenger"] == dict(challenger_reasons)
    # On the same approved applications with a repayment outcome: both AUCs and
    # the bad rate of what each version approves.
    performing = [(d, o) for d, o in _approved_performing(tables) if d["decision_id"] in shadow]
    good = [1 if o == "repaid" else 0 for _, o in performing]
    seen = report["outcomes"]
    assert seen["rows"] == len(performing)
    assert seen["champion"]["roc_auc"] == pytest.approx(
        auc_pairs(good, [d["probability"] for d, _ in performing]), abs=1e-4
    )
    assert seen["challenger"]["roc_auc"] == pytest.approx(
        auc_pairs(good, [shadow[d["decision_id"]]["probability"] for d, _ in performing]), abs=1e-4
    )
    approves = [
        g
        for (d, _), g in zip(performing, good, strict=True)
        if shadow[d["decision_id"]]["Loan_Status"] == "Y"
    ]
    assert seen["challenger"]["approves"] == len(approves)
    assert seen["challenger"]["bad_rate_of_approved"] == pytest.approx(
        1 - sum(approves) / len(approves), abs=1e-4
    )
    text = format_challenger(report)
    assert "flips N->Y" in text and "adverse impact ratio" in text
    json.dumps(report)


def _write_tables(tables, folder):
    """The tables as the CLI reads them: the store's JSON-lines export and CSVs."""
    decisions = folder / "decisions.jsonl"
    with decisions.open("w") as out:
        for d in records(tables["decisions"]):
            record = {
                "decision_id": d["decision_id"],
                "time": d["decided_at"].isoformat(timespec="milliseconds"),
                "model_tag": d["model_tag"],
                "application": {k: d[k] for k in ("Loan_ID", "Gender", "Married", "Property_Area")},
                "Loan_Status": d["Loan_Status"],
                "probability": d["probability"],
                "reasons": [c for c in d["reasons"].split(";") if c],
            }
            out.write(json.dumps(record) + "\n")
    paths = {"decisions": decisions}
    for name in ("outcomes", "overrides", "challenger"):
        frame = tables[name].copy()
        for column in ("observed_on", "overridden_at"):
            if column in frame:
                frame[column] = frame[column].map(lambda t: t.isoformat())
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def test_the_command_reads_the_export_and_csvs_and_prints_the_same_reports(
    tables, tmp_path, capsys
):
    from loan_preprocessing.operations.model_risk.__main__ import main

    paths = _write_tables(tables, tmp_path)
    common = ["--decisions", str(paths["decisions"]), "--json"]
    assert (
        main(
            [
                "outcomes",
                *common,
                "--outcomes",
                str(paths["outcomes"]),
                "--overrides",
                str(paths["overrides"]),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    expected = outcomes_report(tables["decisions"], tables["outcomes"], tables["overrides"])
    assert printed == json.loads(json.dumps(expected))
    assert main(["overrides", *common, "--overrides", str(paths["overrides"])]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(
        json.dumps(overrides_report(tables["decisions"], tables["overrides"]))
    )
    args = [
        "challenger",
        *common,
        "--challenger",
        str(paths["challenger"]),
        "--outcomes",
        str(paths["outcomes"]),
        "--overrides",
        str(paths["overrides"]),
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = challenger_report(
        tables["decisions"], tables["challenger"], tables["outcomes"], tables["overrides"]
    )
    assert printed == json.loads(json.dumps(expected))
    # Text output, and a bad outcome named with its file and column.
    assert (
        main(
            [
                "challenger",
                "--decisions",
                str(paths["decisions"]),
                "--challenger",
                str(paths["challenger"]),
            ]
        )
        == 0
    )
    assert "flips N->Y" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("decision_id,outcome,observed_on\nd00001,paid,2026-05-01\n")
    assert main(["outcomes", "--decisions", str(paths["decisions"]), "--outcomes", str(bad)]) == 2
    assert "'paid' is not one of repaid" in capsys.readouterr().err
