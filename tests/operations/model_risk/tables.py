"""Seeded decision, outcome, override and challenger tables for the report tests,
and the report figures computed again, independently, row by row in plain Python."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

GROUPS = {
    "Gender": ["Male", "Female"],
    "Married": ["Yes", "No"],
    "Property_Area": ["Urban", "Semiurban", "Rural"],
}
OUTCOME_CHOICES = ["repaid", "repaid", "repaid", "delinquent", "defaulted", "withdrawn"]
RATIONALES = ["Verified income", "Collateral offered", "Fraud suspicion", "policy exception"]


def make_tables(rows: int = 3000, seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    probability = rng.beta(3, 2, rows)
    status = np.where(probability >= 0.55, "Y", "N")
    start = pd.Timestamp("2026-01-01", tz="UTC")
    decided_at = start + pd.to_timedelta(rng.integers(0, 90 * 24 * 3600, rows), unit="s")
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(rows)],
            "model_tag": np.where(rng.random(rows) < 0.7, "loan_approval:aaa", "loan_approval:bbb"),
            "decided_at": decided_at,
            "Loan_Status": status,
            "probability": probability,
            "reasons": np.where(
                status == "N",
                rng.choice(["CREDIT_HISTORY;LOAN_TO_INCOME", "LOAN_TO_INCOME", "INCOME"], rows),
                "",
            ),
            "Loan_ID": [f"LP{i:06d}" for i in range(rows)],
        }
    )
    for name, levels in GROUPS.items():
        column = rng.choice(levels, rows).astype(object)
        column[rng.random(rows) < 0.03] = None
        decisions[name] = column
    # Overrides: some rejections approved, some approvals rejected, one restated,
    # and a decision overridden twice (the later one counts).
    picked = rng.choice(rows, 200, replace=False)
    overrides = pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy()[picked],
            "person": "officer-1",
            "rationale": rng.choice(RATIONALES, len(picked)),
            "final_status": np.where(status[picked] == "Y", "N", "Y"),
            "overridden_at": decided_at[picked] + pd.Timedelta(hours=2),
        }
    )
    restated = decisions.iloc[[picked[0]]]
    overrides = pd.concat(
        [
            overrides,
            pd.DataFrame(
                {
                    "decision_id": restated["decision_id"].to_numpy(),
                    "person": "officer-2",
                    "rationale": ["second look"],
                    "final_status": restated["Loan_Status"].to_numpy(),
                    "overridden_at": restated["decided_at"].to_numpy() + pd.Timedelta(days=1),
                }
            ),
        ],
        ignore_index=True,
    )
    final = dict(zip(decisions["decision_id"], decisions["Loan_Status"], strict=True))
    for row in overrides.sort_values("overridden_at").itertuples():
        final[row.decision_id] = row.final_status
    # Outcomes for 70% of the finally approved; good outcomes likelier at high P(Y).
    approved_ids = [d for d, s in final.items() if s == "Y"]
    chosen = [d for d in approved_ids if rng.random() < 0.7]
    p_of = dict(zip(decisions["decision_id"], probability, strict=True))
    outcome = []
    for decision_id in chosen:
        if rng.random() < 0.08:
            outcome.append("withdrawn")
        else:
            outcome.append(
                "repaid"
                if rng.random() < p_of[decision_id]
                else rng.choice(["delinquent", "defaulted"])
            )
    outcomes = pd.DataFrame(
        {
            "decision_id": chosen,
            "outcome": outcome,
            "observed_on": pd.Timestamp("2026-06-01", tz="UTC"),
        }
    )
    # A decision reported twice: the later observation counts.
    if chosen:
        outcomes = pd.concat(
            [
                outcomes,
                pd.DataFrame(
                    {
                        "decision_id": [chosen[0]],
                        "outcome": ["defaulted"],
                        "observed_on": [pd.Timestamp("2026-07-01", tz="UTC")],
                    }
                ),
            ],
            ignore_index=True,
        )
    challenger_p = np.clip(probability + rng.normal(0, 0.08, rows), 0, 1)
    challenger_status = np.where(challenger_p >= 0.55, "Y", "N").astype(object)
    challenger_status[:10] = None  # rows the challenger could not score
    challenger = pd.DataFrame(
        {
            "decision_id": decisions["decision_id"],
            "model_tag": "loan_approval:ccc",
            "Loan_Status": challenger_status,
            "probability": np.where(pd.isna(challenger_status), np.nan, challenger_p),
            "reasons": np.where(
                challenger_status == "N", rng.choice(["INCOME", "CREDIT_HISTORY"], rows), ""
            ),
        }
    )
    return {
        "decisions": decisions,
        "outcomes": outcomes,
        "overrides": overrides,
        "challenger": challenger,
    }


# ---- independent figures --------------------------------------------------------


def auc_pairs(good: list[int], scores: list[float]) -> float:
    """AUC by its definition: P(score of a good > score of a bad), ties half."""
    pos = [s for g, s in zip(good, scores, strict=True) if g == 1]
    neg = [s for g, s in zip(good, scores, strict=True) if g == 0]
    pos_a = np.array(pos)[:, None]
    neg_a = np.array(neg)[None, :]
    wins = (pos_a > neg_a).sum() + 0.5 * (pos_a == neg_a).sum()
    return float(wins / (len(pos) * len(neg)))


def psi(reference: list[float], current: list[float]) -> float:
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, 1e-4), max(c, 1e-4)
        total += (c - r) * math.log(c / r)
    return total


def tenths(values: list[float]) -> list[float]:
    counts = Counter(min(int(v * 10), 9) for v in values)
    return [counts[i] / len(values) for i in range(10)]


def final_status_by_id(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    final = dict(
        zip(tables["decisions"]["decision_id"], tables["decisions"]["Loan_Status"], strict=True)
    )
    for row in tables["overrides"].sort_values("overridden_at").itertuples():
        final[row.decision_id] = row.final_status
    return final


def outcome_by_id(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    outcome: dict[str, str] = {}
    for row in tables["outcomes"].sort_values("observed_on").itertuples():
        outcome[row.decision_id] = row.outcome
    return outcome


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")
