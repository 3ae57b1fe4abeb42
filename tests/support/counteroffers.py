"""What makes a counteroffer exact, checked with the scikit-learn pipeline's own
predict_proba (never the service's fast path), on any answers: in-process,
over HTTP or from a built Bento.

The step points are read here from the fitted trees (their thresholds on
LogLoanAmount and LogInstalmentToIncome) and mapped back to amounts with the
features' own formulas, independently of loan_preprocessing/model/counteroffers.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loan_preprocessing.model.features import (
    DEFAULT_TERM_MONTHS,
    pipeline_features,
    to_feature_frame,
)
from loan_preprocessing.schema import APPROVED, STANDARD_TERMS_MONTHS, LoanApplication

UNIT = 1000.0  # whole units of currency per LoanAmount (thousands)


def step_points(pipeline, application: LoanApplication) -> list[float]:
    """The amounts at which P(Y) of this application can change: exp(t) for the
    thresholds t on LogLoanAmount, and the amount whose instalment-to-income is
    exp(t) for those on LogInstalmentToIncome."""
    classifier = pipeline[-1]
    # Positions in the model's own features (a candidate of the fair-lending
    # search may read fewer than MODEL_FEATURES).
    features = pipeline_features(pipeline)
    scales = {"LogLoanAmount": 1.0, "LogInstalmentToIncome": None}
    wanted = {features.index(name): scale for name, scale in scales.items() if name in features}
    term = application.Loan_Amount_Term or DEFAULT_TERM_MONTHS
    income = application.ApplicantIncome + application.CoapplicantIncome
    points = []
    for iteration in classifier._predictors:
        nodes = iteration[0].nodes
        for node in nodes[nodes["is_leaf"] == 0]:
            feature = int(node["feature_idx"])
            if feature in wanted:
                scale = wanted[feature] or (income + 1.0) * term / 1000.0
                points.append(math.exp(float(node["num_threshold"])) * scale)
    return sorted(set(points))


@dataclass(frozen=True)
class Probe:
    """One application with its amount or term changed, and whether the offer
    says the model must approve it."""

    row: dict
    must_approve: bool
    what: str


def probes(
    pipeline,
    application: LoanApplication,
    amount: float | None,
    term: float | None,
) -> list[Probe]:
    """What must hold for a denial's offers: the offered amount is approved and
    every whole unit above it at a step point (and the next unit) is not; the
    offered term is approved and no standard term nearer to the requested one
    is (ties: the shorter wins)."""
    base = application.model_dump()
    found = []
    requested = application.LoanAmount
    if requested is not None:
        above: list[int] = [0 if amount is None else round(amount * UNIT)]
        for point in step_points(pipeline, application):
            unit = math.floor(point * UNIT)
            above += [unit, unit + 1]
        if amount is None:
            above.append(1)
        for unit in sorted(set(above)):
            value = unit / UNIT
            if amount is not None and unit == round(amount * UNIT):
                found.append(Probe({**base, "LoanAmount": value}, True, f"amount {value}"))
            elif unit >= 1 and value < requested and (amount is None or value > amount):
                found.append(Probe({**base, "LoanAmount": value}, False, f"amount {value}"))
    else:
        assert amount is None, "an application without an amount gets no amount offer"
    asked = application.Loan_Amount_Term
    reference = DEFAULT_TERM_MONTHS if asked is None else asked
    for standard in STANDARD_TERMS_MONTHS:
        row = {**base, "Loan_Amount_Term": standard}
        if term is not None and standard == term:
            found.append(Probe(row, True, f"term {standard}"))
        elif standard == asked:
            continue
        elif term is None or (abs(standard - reference), standard) < (
            abs(term - reference),
            term,
        ):
            found.append(Probe(row, False, f"term {standard}"))
    return found


def assert_exact(
    pipeline,
    threshold: float,
    applications: Sequence[LoanApplication],
    statuses: Sequence[str],
    amounts: Sequence[float | None],
    terms: Sequence[float | None],
) -> None:
    """Every denial's offers hold, by the pipeline's own predict_proba, in one call."""
    checks: list[tuple[int, Probe]] = []
    for i, (application, status, amount, term) in enumerate(
        zip(applications, statuses, amounts, terms, strict=True)
    ):
        if status == APPROVED:
            assert amount is None and term is None, (i, "an approval has no counteroffer")
            continue
        if amount is not None:
            assert amount == round(amount * UNIT) / UNIT, (i, "an amount is whole units", amount)
            assert amount < (application.LoanAmount or 0), (i, "offers less than asked", amount)
        if term is not None:
            assert term in STANDARD_TERMS_MONTHS and term != application.Loan_Amount_Term
        checks += [(i, probe) for probe in probes(pipeline, application, amount, term)]
    if not checks:
        return
    frame = to_feature_frame(pd.DataFrame([probe.row for _, probe in checks]))
    approved = pipeline.predict_proba(frame)[:, 1] >= threshold
    wrong = [
        (i, probe.what, "must be approved" if probe.must_approve else "must be denied")
        for (i, probe), got in zip(checks, approved.tolist(), strict=True)
        if got != probe.must_approve
    ]
    assert not wrong, wrong[:10]


def dense_amounts(pipeline, threshold: float, application: LoanApplication) -> float | None:
    """The largest whole unit below the requested amount that the pipeline
    approves, found by scoring every one of them (brute force)."""
    requested = application.LoanAmount
    assert requested is not None
    units = np.arange(1, math.ceil(requested * UNIT))
    units = units[units / UNIT < requested]
    frame = pd.DataFrame({k: [v] * len(units) for k, v in application.model_dump().items()})
    frame["LoanAmount"] = units / UNIT
    approved = pipeline.predict_proba(to_feature_frame(frame))[:, 1] >= threshold
    return float(units[approved].max() / UNIT) if approved.any() else None
