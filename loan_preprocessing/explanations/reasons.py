"""Principal reasons for a rejection, from the model's own arithmetic.

Method (README, "Why a rejection"): the Shapley values of the model's log-odds
for this applicant against a reference population kept with the model (the
training applicants the model approves with the lowest scores: those at or
just above the cutoff), computed exactly on the fitted trees (tree_shapley.py).
The contributions of the features behind one reason code are added; the codes
whose total lowered the score by at least MIN_REASON_LOG_ODDS are the reasons,
most negative first, at most MAX_REASONS. The reference population's mean
log-odds is at or above the cutoff and a rejected applicant's is below it, so
the contributions of a rejection add up to a negative number: every rejection
has at least one reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import bentoml
import numpy as np
from sklearn.pipeline import Pipeline

from loan_preprocessing.explanations.tree_shapley import TreeShapley
from loan_preprocessing.model.features import DERIVED_FROM, MODEL_FEATURES, pipeline_features
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, ModelLoadError, model_metadata
from loan_preprocessing.reason_codes import (
    CODES,
    FEATURE_REASONS,
    MAX_REASONS,
    REASON_CODES,
    WHEN_NOT_PROVIDED,
)
from loan_preprocessing.schema import PROTECTED_ATTRIBUTES, Reason

REFERENCE_FILE: Final = "reason_reference.json"
# The fields a reason may name: those the model reads (features.DERIVED_FROM),
# never a protected characteristic (checked again here, whatever the table says).
NAMEABLE_FIELDS: Final = tuple(f for f in DERIVED_FROM if f not in PROTECTED_ATTRIBUTES)
# How many approved applicants, lowest scores first, make the reference
# population: about the lowest-scoring fifth of the real data's approvals.
REFERENCE_SIZE: Final = 100
# A factor is a principal reason only if it lowered the log-odds by at least
# this much (the odds of approval by about 1%). Below it are factors that barely
# moved the score, e.g. the loan term, which on the real data never moves it by
# more than 0.006 and would otherwise be named in most rejections.
MIN_REASON_LOG_ODDS: Final = 0.01
METADATA_KEY: Final = "reasons"


@dataclass(frozen=True)
class ReferencePopulation:
    """The model inputs (the model's features after imputation) of the reference
    applicants, and how they were chosen."""

    inputs: np.ndarray
    selection: str
    features: tuple[str, ...] = MODEL_FEATURES

    def payload(self) -> bytes:
        """The file stored with the model: JSON, floats written so they read back exactly."""
        document = {
            "features": list(self.features),
            "selection": self.selection,
            "rows": self.inputs.tolist(),
        }
        return (json.dumps(document, indent=None) + "\n").encode()

    def metadata(self) -> dict[str, Any]:
        return {
            "reference_file": REFERENCE_FILE,
            "sha256": hashlib.sha256(self.payload()).hexdigest(),
            "rows": len(self.inputs),
            "selection": self.selection,
        }


def reference_rows(
    probabilities: np.ndarray, threshold: float, size: int = REFERENCE_SIZE
) -> np.ndarray:
    """Indices of the `size` applications approved with the lowest P(Y): the
    applicants at or just above the cutoff (Regulation B commentary,
    1002.9(b)(2)-5), lowest first."""
    approved = np.flatnonzero(probabilities >= threshold)
    if not len(approved):
        raise ValueError("the model approves no training application: no reference population")
    return approved[np.argsort(probabilities[approved], kind="stable")[:size]]


def build_reference(
    pipeline: Pipeline, features: Any, threshold: float, size: int = REFERENCE_SIZE
) -> ReferencePopulation:
    """The reference population of a fitted pipeline: the model inputs of the
    training applications (`features`, the training frame) it approves with the
    lowest P(Y)."""
    inputs = np.asarray(pipeline[:-1].transform(features), dtype=np.float64)
    probabilities = pipeline[-1].predict_proba(inputs)[:, 1]
    chosen = reference_rows(probabilities, threshold, size)
    low, high = probabilities[chosen].min(), probabilities[chosen].max()
    selection = (
        f"the {len(chosen)} of {len(probabilities)} training applications the model approves "
        f"with the lowest P(Y) ({low:.3f} to {high:.3f}; threshold {threshold:g})"
    )
    return ReferencePopulation(inputs[chosen], selection, pipeline_features(pipeline))


def load_reference(model: bentoml.Model) -> ReferencePopulation:
    """The stored model's reference population, checked against its metadata."""
    recorded = model_metadata(model).get(METADATA_KEY) or {}
    path = model.path_of(REFERENCE_FILE)
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise ModelLoadError(
            f"model {model.tag} has no {REFERENCE_FILE} to explain its rejections with; "
            "retrain it with this version of train.py"
        ) from None
    if hashlib.sha256(payload).hexdigest() != recorded.get("sha256"):
        raise ModelLoadError(
            f"model {model.tag}: {REFERENCE_FILE} does not match the sha256 recorded at "
            "training; the file was changed after training, retrain or restore it"
        )
    document = json.loads(payload)
    features = (model_metadata(model).get(MODEL_INPUTS_KEY) or {}).get("features")
    if document.get("features") != features:
        raise ModelLoadError(
            f"model {model.tag}: its reference population has the features "
            f"{document.get('features')}, the model has {features}; retrain it"
        )
    return ReferencePopulation(
        np.asarray(document["rows"], dtype=np.float64), document["selection"], tuple(features)
    )


class ReasonExplainer:
    """The principal reasons for rejecting applications, from the classifier's inputs."""

    # From this many rows, reasons are named per distinct combination of codes
    # rather than per row (a tuple a row costs a microsecond; a sort, a dozen).
    SHARED_NAMES_MIN_ROWS = 64

    def __init__(
        self,
        classifier: Any,
        reference: ReferencePopulation,
        features: Sequence[str] = MODEL_FEATURES,
    ) -> None:
        unmapped = [f for f in features if f not in FEATURE_REASONS]
        if unmapped:
            raise ValueError(f"model features without a reason code: {', '.join(unmapped)}")
        unnameable = {r.code: sorted(set(r.fields) - set(NAMEABLE_FIELDS)) for r in REASON_CODES}
        if any(unnameable.values()):
            raise ValueError(f"reason codes naming fields no reason may name: {unnameable}")
        self.shapley = TreeShapley(classifier, reference.inputs)
        if len(features) != self.shapley.n_features:
            raise ValueError(f"{len(features)} feature names for {self.shapley.n_features} inputs")
        self.features = tuple(features)
        codes = [reason.code for reason in REASON_CODES]
        self.group_of_feature = [codes.index(FEATURE_REASONS[f]) for f in features]
        # Built once: every rejection shares these immutable objects.
        self._reasons = [
            Reason(code=r.code, fields=r.fields, text=r.text, actionable=r.actionable)
            for r in REASON_CODES
        ]
        # (a reason's index, the index of the reason given instead when the
        # application left all of its fields empty, those fields)
        self._when_not_provided = [
            (codes.index(code), codes.index(other), CODES[code].fields)
            for code, other in WHEN_NOT_PROVIDED.items()
        ]
        # The fields `reasons` must be told about: were they left empty?
        self.fields_checked = tuple(
            dict.fromkeys(f for _, _, fields in self._when_not_provided for f in fields)
        )
        # The reasons of each combination of codes and flags met so far: bounded by
        # the table (ordered choices of at most MAX_REASONS codes, one flag per
        # WHEN_NOT_PROVIDED code), whatever clients send.
        self._named: dict[tuple[tuple[int, ...], tuple[bool, ...]], tuple[Reason, ...]] = {}

    @property
    def expected_value(self) -> float:
        """The reference population's mean log-odds: attributions + this = log-odds."""
        return self.shapley.expected_value

    def attributions(self, inputs: np.ndarray) -> np.ndarray:
        """(rows x features) Shapley values of the log-odds."""
        return self.shapley.shap_values(inputs)

    def code_contributions(self, inputs: np.ndarray) -> np.ndarray:
        """(rows x REASON_CODES) attributions added up by reason code."""
        return self.shapley.grouped(inputs, self.group_of_feature, len(REASON_CODES))

    def reasons(
        self, inputs: np.ndarray, not_provided: Mapping[str, np.ndarray | Sequence[bool]]
    ) -> list[tuple[Reason, ...]]:
        """For each row of `inputs` (the classifier's input), the codes whose
        contributions lowered its log-odds by MIN_REASON_LOG_ODDS or more, most
        negative first, at most MAX_REASONS. Ties keep the table's order, so the
        answer is the same whatever else is in the batch. `not_provided` holds, for
        each of `fields_checked`, whether each row's application left it empty."""
        if not len(inputs):
            return []
        contributions = self.code_contributions(inputs)
        order = np.argsort(contributions, axis=1, kind="stable")[:, :MAX_REASONS]
        # The same values as take_along_axis(contributions, order) (a stable sort
        # keeps equal values in place), at half the cost on a single row.
        ranked = np.sort(contributions, axis=1, kind="stable")[:, :MAX_REASONS]
        named = ranked <= -MIN_REASON_LOG_ODDS
        # The factor that lowered the score most is named even below the floor
        # (a rejection's contributions add up to less than zero, see above).
        named[:, 0] = ranked[:, 0] < 0
        chosen = np.where(named, order, -1)
        # Whether each row left the fields of each WHEN_NOT_PROVIDED code empty:
        # part of the key its reasons are named from (see _name).
        empty = [
            functools.reduce(
                np.logical_and, [np.asarray(not_provided[f], dtype=bool) for f in fields]
            )
            for _, _, fields in self._when_not_provided
        ]
        if len(chosen) < self.SHARED_NAMES_MIN_ROWS:
            keys = zip(map(tuple, chosen.tolist()), _row_tuples(empty, len(chosen)), strict=True)
            return [self._named.get(key) or self._name(key) for key in keys]
        # Few distinct combinations among many rows: each is named once, found by
        # one integer per row (its codes and flags as digits), and the rows share
        # the tuples.
        key = (chosen + 1) @ (len(REASON_CODES) + 1) ** np.arange(chosen.shape[1])
        for flags in empty:
            key = 2 * key + flags
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        names = np.empty(len(first), dtype=object)
        firsts = zip(
            map(tuple, chosen[first].tolist()),
            _row_tuples([e[first] for e in empty], len(first)),
            strict=True,
        )
        for i, row_key in enumerate(firsts):
            names[i] = self._named.get(row_key) or self._name(row_key)
        return names[inverse].tolist()

    def _name(self, key: tuple[tuple[int, ...], tuple[bool, ...]]) -> tuple[Reason, ...]:
        """The reasons of codes (-1: none), each WHEN_NOT_PROVIDED code said the
        other way where its flag says the application left its fields empty."""
        codes, empty = key
        instead = {
            code: other
            for (code, other, _), flag in zip(self._when_not_provided, empty, strict=True)
            if flag
        }
        reasons = tuple(self._reasons[instead.get(code, code)] for code in codes if code >= 0)
        self._named[key] = reasons
        return reasons


def _row_tuples(columns: list[np.ndarray], rows: int) -> list[tuple[bool, ...]]:
    """Each row's values of `columns`, as a tuple."""
    if not columns:
        return [()] * rows
    return list(zip(*(column.tolist() for column in columns), strict=True))
