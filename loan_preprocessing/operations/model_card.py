"""The model card stored with every version: what the model is for, what it reads
and deliberately does not, how good and how fair it measured, and its limits.

train.py writes it (skops.card, the common Markdown format) into the model's folder
as `model_card.md`, so it travels with the model into every Bento that packages
it (an exported or containerized Bento holds the model's folder);
`python -m loan_preprocessing.operations.versions show <tag> --card` prints it.
Everything in it comes from the metadata recorded with the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sklearn.pipeline import Pipeline
from skops.card import Card

from loan_preprocessing.data import DEFAULT_DATA_PATH, file_sha256
from loan_preprocessing.explanations.reasons import METADATA_KEY as REASONS_METADATA_KEY
from loan_preprocessing.explanations.reasons import MIN_REASON_LOG_ODDS
from loan_preprocessing.model.features import NOT_MODEL_INPUTS
from loan_preprocessing.operations.fairness import (
    ADVERSE_IMPACT_RATIO,
    APPROVAL_RATE,
    COUNT,
    DEFAULT_MIN_ADVERSE_IMPACT_RATIO,
    EQUAL_OPPORTUNITY_DIFFERENCE,
    FAIRNESS_KEY,
    FALSE_POSITIVE_RATE,
    TRUE_POSITIVE_RATE,
    rate_text,
    with_interval,
)
from loan_preprocessing.operations.report import APPROVAL_BY_GROUP_FILE, STORE_REPORT_DIR
from loan_preprocessing.reason_codes import MAX_REASONS, REASON_CODES
from loan_preprocessing.schema import PROHIBITED_BASIS_RULE

CARD_FILE: Final = "model_card.md"
# Section titles, in card order; tests and the reasons work look them up by name.
INTENDED_USE = "Intended use"
OUT_OF_SCOPE = "Out-of-scope use"
TRAINING_DATA = "Training data"
FIELDS_USED = "Fields used"
FIELDS_NOT_USED = "Fields deliberately not used"
METRICS = "Metrics"
DECISION_THRESHOLD_SECTION = "Decision threshold"
FAIRNESS_AUDIT = "Fairness audit"
FAIRNESS_BY_GROUP = "Fairness audit by group"
HOW_DECISIONS_ARE_EXPLAINED = "How decisions are explained"
KNOWN_LIMITATIONS = "Known limitations"
HOW_TO_RETRAIN = "How to retrain"
SECTIONS: Final = (
    INTENDED_USE,
    OUT_OF_SCOPE,
    TRAINING_DATA,
    FIELDS_USED,
    FIELDS_NOT_USED,
    METRICS,
    DECISION_THRESHOLD_SECTION,
    FAIRNESS_AUDIT,
    FAIRNESS_BY_GROUP,
    HOW_DECISIONS_ARE_EXPLAINED,
    KNOWN_LIMITATIONS,
    HOW_TO_RETRAIN,
)

# Data sets recognised by their sha256: the public Loan Prediction training file
# as distributed (the copy in ../shared/data/loan-prediction/).
KNOWN_DATA_SETS: Final = {
    "8c2cc67a13279ec746b15f76f14e8503154274ef7f221d2437033b4407c80ca8": (
        "real: the public Loan Prediction practice data set (614 applications to one "
        "lender, collected in the 2010s)"
    ),
}
SYNTHETIC_DATA = (
    "synthetic: the project's seeded sample (data/loan_sample.csv); it has the real "
    "data's columns and missing-value rates and says nothing about real applicants"
)
OTHER_DATA = "supplied by whoever trained this version (not a data set this project knows)"
# What each recorded metric was measured on.
METRIC_SOURCES: Final = {
    "holdout": "held-out 20% of the rows (stratified), model searched on the other 80%",
    "classic_split": "the classic tutorial split (test_size=0.25, random_state=42)",
    "cv": "out-of-fold predictions on every row, from the final search's 5 folds",
}


def build_card(pipeline: Pipeline, metadata: Mapping[str, Any], title: str) -> Card:
    """The model card of a model about to be stored with `metadata`."""
    card = Card(pipeline, template=None, model_diagram=False)
    card.add(**{f"Model card: {title}": model_description(metadata)})
    card.add(**{INTENDED_USE: intended_use(), OUT_OF_SCOPE: out_of_scope_use()})
    card.add(**{TRAINING_DATA: training_data(metadata)})
    fields = metadata["model_inputs"]["fields"]
    card.add_table(
        description="The application fields the model reads; its features "
        f"({', '.join(metadata['model_inputs']['features'])}) are computed from them "
        "inside the pipeline.",
        **{FIELDS_USED: {"field": list(fields)}},
    )
    card.add_table(
        description="Accepted by the API, never seen by the model.",
        **{
            FIELDS_NOT_USED: {
                "field": list(NOT_MODEL_INPUTS),
                "why": list(NOT_MODEL_INPUTS.values()),
            }
        },
    )
    card.add_table(**{METRICS: metrics_table(metadata["metrics"])})
    card.add(**{DECISION_THRESHOLD_SECTION: decision_threshold(metadata["threshold"])})
    audit = metadata[FAIRNESS_KEY]
    card.add_table(description=fairness_summary(audit), **{FAIRNESS_AUDIT: gaps_table(audit)})
    card.add_table(**{FAIRNESS_BY_GROUP: groups_table(audit)})
    # skops titles a table with its whole key, a plot with the last part: the plot
    # can be a subsection, the tables are sections of their own.
    plot = f"{STORE_REPORT_DIR}/{APPROVAL_BY_GROUP_FILE}"  # relative: the card's folder
    card.add_plot(**{f"{FAIRNESS_BY_GROUP}/Approval rate by group": plot})
    card.add(**{HOW_DECISIONS_ARE_EXPLAINED: how_decisions_are_explained(metadata)})
    card.add(**{KNOWN_LIMITATIONS: known_limitations(metadata)})
    card.add(**{HOW_TO_RETRAIN: how_to_retrain(metadata)})
    return card


def model_description(metadata: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k.split('__')[-1]}={v}" for k, v in metadata["hyperparameters"].items())
    return (
        "One scikit-learn Pipeline: affordability features derived from the application "
        "(log incomes, instalment-to-income, credit history), median imputation, and a "
        "histogram gradient-boosting classifier of 3-leaf trees, monotonic in credit "
        f"history ({params}). It estimates P(Loan_Status = Y), the probability that the "
        "lender approved a similar application."
    )


def intended_use() -> str:
    return (
        "Decision support for consumer loan applications like those of the training data: "
        "a first decision (approve or refer for review) with a probability, behind the "
        "service's /predict API, with its fairness audit checked before each version is "
        "deployed and approval rates by group monitored in production "
        "(`make fairness LOG=...`)."
    )


def out_of_scope_use() -> str:
    return (
        "- Final adverse decisions without human review or without the reasons a denied "
        "applicant is owed.\n"
        "- Applicants, products or markets unlike the training data (other countries, "
        "lenders, loan types, currencies, or amounts far outside its range).\n"
        "- Any use of the protected fields it accepts (sex, marital status) to decide; "
        "they are kept only to audit the decisions.\n"
        "- Pricing, credit limits, or anything but this approve/reject estimate."
    )


def training_data(metadata: Mapping[str, Any]) -> str:
    data = metadata["training_data"]
    return (
        f"- kind: {data_kind(data['sha256'])}\n"
        f"- file: `{data['file']}`\n"
        f"- rows: {data['rows']}\n"
        f"- sha256: `{data['sha256']}`"
    )


def data_kind(sha256: str) -> str:
    if sha256 in KNOWN_DATA_SETS:
        return KNOWN_DATA_SETS[sha256]
    if DEFAULT_DATA_PATH.is_file() and sha256 == file_sha256(DEFAULT_DATA_PATH):
        return SYNTHETIC_DATA
    return OTHER_DATA


def metrics_table(metrics: Mapping[str, float]) -> dict[str, list[Any]]:
    names = list(metrics)
    return {
        "metric": names,
        "value": [f"{metrics[n]:.3f}" for n in names],
        "measured on": [METRIC_SOURCES.get(_source(n), "") for n in names],
    }


def _source(metric: str) -> str:
    return next((s for s in METRIC_SOURCES if metric.startswith(s + "_")), "")


def decision_threshold(threshold: float) -> str:
    return (
        f"Approve (Y) when P(Y) >= {threshold:g}, else reject (N). Not tuned for accuracy: "
        "tuning on this data drifts to approving every good credit history, which did not "
        "generalise. Every figure in this card is at this threshold."
    )


def fairness_summary(audit: Mapping[str, Any]) -> str:
    boot = audit["bootstrap"]
    low, high = boot["quantiles"]
    return (
        f"Decisions audited: {audit['source']} ({audit['rows']} rows), by group of each "
        "protected attribute and of Property_Area (a proxy: reported, never blocking), with "
        f"fairlearn's MetricFrame. Intervals: {high - low:.0%} bootstrap, "
        f"{boot['samples']} resamples, seed {boot['seed']}. Training refuses a version whose "
        f"adverse impact ratio for a protected attribute is below "
        f"{DEFAULT_MIN_ADVERSE_IMPACT_RATIO} (the four-fifths rule) unless overridden."
    )


def groups_table(audit: Mapping[str, Any]) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {
        "attribute": [],
        "group": [],
        "count": [],
        "approval rate (interval)": [],
        "true positive rate": [],
        "false positive rate": [],
    }
    for name, result in audit["attributes"].items():
        for group, values in result["groups"].items():
            rows["attribute"].append(name)
            rows["group"].append(group)
            rows["count"].append(f"{values[COUNT]:.0f}")
            rows["approval rate (interval)"].append(with_interval(values, APPROVAL_RATE))
            rows["true positive rate"].append(rate_text(values.get(TRUE_POSITIVE_RATE)))
            rows["false positive rate"].append(rate_text(values.get(FALSE_POSITIVE_RATE)))
    return rows


def gaps_table(audit: Mapping[str, Any]) -> dict[str, list[Any]]:
    attributes = audit["attributes"]
    return {
        "attribute": list(attributes),
        "stands for": [r["stands_for"] for r in attributes.values()],
        "adverse impact ratio (interval)": [
            with_interval(r, ADVERSE_IMPACT_RATIO) for r in attributes.values()
        ],
        "equal-opportunity difference (interval)": [
            with_interval(r, EQUAL_OPPORTUNITY_DIFFERENCE) for r in attributes.values()
        ],
        "not stated": [r["not_stated"] for r in attributes.values()],
        "blocks training": ["yes" if r["protected"] else "no" for r in attributes.values()],
    }


def how_decisions_are_explained(metadata: Mapping[str, Any]) -> str:
    """The section on explanations: what every rejection carries and how it is
    computed (loan_preprocessing/explanations/reasons.py; README, "Why a rejection")."""
    reference = metadata.get(REASONS_METADATA_KEY) or {}
    codes = "\n".join(
        f"| `{r.code}` | {r.text} | {', '.join(f'`{f}`' for f in r.fields)} |" for r in REASON_CODES
    )
    return (
        "Each decision carries P(Y) and the model version that made it (X-Model-Tag). "
        f"Every rejection (N) also carries its principal reasons, at most {MAX_REASONS}, "
        "most important first, as fixed codes with the application fields they are about "
        "and a plain-language text (Regulation B, 12 CFR 1002.9(b)(2)); an approval has "
        "none. The same reasons come from /predict, /predict_csv, offline scoring and the "
        "Spark job.\n\n"
        "Method: the Shapley values of the model's log-odds for the applicant against a "
        "reference population stored with this model: "
        f"{reference.get('selection', 'not recorded')} (the commentary to 1002.9(b)(2) "
        "describes comparing with the applicants at or slightly above the passing score). "
        "They are computed exactly on the fitted trees (interventional TreeSHAP, in closed "
        "form for trees of 3 leaves) and equal shap's exact explainer within 1e-9 in the "
        "tests; with the reference's mean log-odds they add up to the applicant's. The "
        "contributions of the features behind one code are added; the codes that lowered "
        f"the log-odds by at least {MIN_REASON_LOG_ODDS:g} are named, the largest first. A "
        "code names only fields the model reads, never a protected characteristic.\n\n"
        "| code | text | application fields |\n|---|---|---|\n" + codes
    )


def known_limitations(metadata: Mapping[str, Any]) -> str:
    rows = metadata["training_data"]["rows"]
    return (
        f"- Trained on {rows} rows: group figures have wide intervals (see the audit), "
        "and small shifts in approval rates are within noise.\n"
        "- The public data set is a 2010s sample from one lender, in one market; its "
        "approvals record that lender's past decisions, not repayment, so the model learns "
        "those decisions, biases included.\n"
        "- Not using sex or marital status does not make the decisions independent of them: "
        "other fields (co-applicant income, property area) correlate with them, which is "
        "why every version is audited.\n"
        "- No interest rate, debt or repayment data: affordability is approximate."
    )


def how_to_retrain(metadata: Mapping[str, Any]) -> str:
    data = metadata["training_data"]
    seed = metadata["search"]["seed"]
    return (
        f"`python train.py --data {data['file']} --seed {seed}` (or `make train DATA=...`) "
        "searches, evaluates, audits and stores a new version with its card; it refuses to "
        "save below the ROC AUC floor or the adverse-impact floor. Check the data's sha256 "
        "against the one above. Protected characteristics "
        f"({PROHIBITED_BASIS_RULE}) must never become inputs: loading refuses such a model."
    )
