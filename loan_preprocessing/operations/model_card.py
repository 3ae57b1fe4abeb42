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
from loan_preprocessing.model.search import ALL_INPUTS
from loan_preprocessing.operations.alternatives import (
    CUTOFF_KEY,
    MIN_PROTECTED_AIR,
    PROXY_TEST_KEY,
    SELECTION_KEY,
    why_kept_or_dropped,
)
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
from loan_preprocessing.operations.report import (
    APPROVAL_BY_GROUP_FILE,
    CUTOFF_FILE,
    FRONTIER_FILE,
    STORE_REPORT_DIR,
)
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
ALTERNATIVES = "Less discriminatory alternatives"
PROXY_TEST = "Proxy test"
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
    ALTERNATIVES,
    PROXY_TEST,
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
    card.add_table(
        description=decision_threshold(metadata["threshold"], metadata.get(CUTOFF_KEY)),
        **{DECISION_THRESHOLD_SECTION: cutoff_table(metadata.get(CUTOFF_KEY))},
    )
    card.add_plot(
        **{f"{DECISION_THRESHOLD_SECTION}/Cutoff trade-off": f"{STORE_REPORT_DIR}/{CUTOFF_FILE}"}
    )
    audit = metadata[FAIRNESS_KEY]
    card.add_table(description=fairness_summary(audit), **{FAIRNESS_AUDIT: gaps_table(audit)})
    card.add_table(**{FAIRNESS_BY_GROUP: groups_table(audit)})
    # skops titles a table with its whole key, a plot with the last part: the plot
    # can be a subsection, the tables are sections of their own.
    plot = f"{STORE_REPORT_DIR}/{APPROVAL_BY_GROUP_FILE}"  # relative: the card's folder
    card.add_plot(**{f"{FAIRNESS_BY_GROUP}/Approval rate by group": plot})
    selection = metadata[SELECTION_KEY]
    card.add_table(
        description=alternatives_summary(selection, metadata.get("search")),
        **{ALTERNATIVES: frontier_table(selection)},
    )
    card.add_plot(**{f"{ALTERNATIVES}/Candidates": f"{STORE_REPORT_DIR}/{FRONTIER_FILE}"})
    proxy = metadata[PROXY_TEST_KEY]
    card.add_table(description=proxy_summary(proxy, selection), **{PROXY_TEST: proxy_table(proxy)})
    card.add(**{HOW_DECISIONS_ARE_EXPLAINED: how_decisions_are_explained(metadata)})
    card.add(**{KNOWN_LIMITATIONS: known_limitations(metadata)})
    card.add(**{HOW_TO_RETRAIN: how_to_retrain(metadata)})
    return card


def model_description(metadata: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k.split('__')[-1]}={v}" for k, v in metadata["hyperparameters"].items())
    search = metadata.get("search") or {}
    first = f"**This is {search['purpose']}.** " if search.get("name", "full") != "full" else ""
    return first + (
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


def decision_threshold(threshold: float, cutoff: Mapping[str, Any] | None) -> str:
    text = (
        f"Approve (Y) when P(Y) >= {threshold:g}, else reject (N). The cutoff is the lender's "
        "decision, recorded with the model (`train.py --cutoff`, default 0.5); every scoring "
        "path (/predict, the V2 API, /predict_csv, offline scoring, the Spark job) decides with "
        "it, and the reasons of a rejection are explained against the applicants just above it. "
        "Every figure in this card is at this cutoff."
    )
    if cutoff:
        text += (
            " The table is the trade-off at other cutoffs, from the "
            f"{cutoff['source']}: the share approved, and of those approved the share the "
            "lender had rejected (the data's only proxy for a bad rate)."
        )
    return text


def cutoff_table(cutoff: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    points = (cutoff or {}).get("curve") or []
    value = (cutoff or {}).get("value")
    return {
        "cutoff": [
            f"{p['cutoff']:g}" + (" (recorded)" if p["cutoff"] == value else "") for p in points
        ],
        "share approved": [rate_text(p["approval_rate"]) for p in points],
        "of approved: rejected by the lender": [
            rate_text(p["approved_rejected_by_lender"]) for p in points
        ],
        "accuracy": [rate_text(p["accuracy"]) for p in points],
    }


def alternatives_summary(
    selection: Mapping[str, Any], search: Mapping[str, Any] | None = None
) -> str:
    chosen = selection["chosen"]
    if search and search.get("name", "full") != "full":
        # A reduced search (the first model): no alternatives were compared.
        return (
            f"Not searched: this is {search['purpose']}. Rule: {selection['rule']}. "
            f"Chosen: **{chosen}** (the only candidate)."
        )
    text = (
        "Every candidate of the declared search space (the fields the model may read, all of "
        "them or all but one; each with the hyperparameter grid and the monotonic constraint in "
        "credit history) was scored out of fold on the search's own folds at the recorded "
        f"cutoff. Rule: {selection['rule']}. Tolerance: {selection['auc_tolerance']:g} "
        f"(best ROC AUC {selection['best_roc_auc']:.3f}). Chosen: **{chosen}**"
    )
    if selection["overridden"]:
        margin = selection["override_margin"]
        text += (
            f", OVERRIDDEN with `--candidate` (the rule chose {selection['chosen_by_rule']}; "
            f"the kept one differs by {margin['roc_auc']:+.4f} in ROC AUC and "
            f"{_signed(margin[MIN_PROTECTED_AIR])} in the lowest protected adverse impact ratio)."
        )
    else:
        text += " (by the rule)."
    return text


def frontier_table(selection: Mapping[str, Any]) -> dict[str, list[Any]]:
    frontier = selection["frontier"]
    attributes = list(next(iter(frontier.values()))["attributes"])
    table: dict[str, list[Any]] = {
        "candidate": [],
        "ROC AUC": [],
        "accuracy": [],
        "Brier": [],
        **{f"AIR {a}": [] for a in attributes},
        "lowest protected AIR": [],
        "within tolerance": [],
    }
    for name, point in frontier.items():
        marked = f"**{name}** (chosen)" if name == selection["chosen"] else name
        table["candidate"].append(marked)
        table["ROC AUC"].append(f"{point['roc_auc']:.3f}")
        table["accuracy"].append(f"{point['accuracy']:.3f}")
        table["Brier"].append(f"{point['brier']:.3f}")
        for a in attributes:
            table[f"AIR {a}"].append(with_interval(point["attributes"][a], ADVERSE_IMPACT_RATIO))
        table["lowest protected AIR"].append(rate_text(point[MIN_PROTECTED_AIR]))
        table["within tolerance"].append("yes" if name in selection["within_tolerance"] else "no")
    return table


def proxy_summary(proxy: Mapping[str, Any], selection: Mapping[str, Any]) -> str:
    """Plain language: how much each field tells about sex and marital status, and
    what became of Property_Area, first."""
    predicts = proxy["predicts_protected_attribute"]
    attributes = list(predicts)
    area = "Property_Area"
    lines = [
        "How well each field the model may read predicts each protected attribute (ROC AUC: "
        "0.5 means it tells nothing, 1.0 that it gives it away; a little under 0.5 is noise), "
        "and what leaving the field "
        f"out does (the candidate without it against '{ALL_INPUTS}'). Method: {proxy['method']}."
    ]
    if area in predicts[attributes[0]]:
        aucs = ", ".join(f"{a} {rate_text(predicts[a][area])}" for a in attributes)
        change = proxy["substitution"].get(area, {})
        lines.append(
            f"**{area}** (a proxy candidate, not a protected attribute) predicts {aucs}. "
            + (
                f"Leaving it out changes ROC AUC by {_signed(change.get('roc_auc_change'))} and "
                "the adverse impact ratios by "
                + ", ".join(
                    f"{a} {_signed(v)}"
                    for a, v in change.get("adverse_impact_ratio_change", {}).items()
                )
                + ". "
                if change
                else ""
            )
            + why_kept_or_dropped(selection, area)
        )
    strongest = {
        a: max(
            ((f, v) for f, v in predicts[a].items() if v is not None and f != ALL_INPUTS),
            key=lambda item: item[1],
            default=(None, None),
        )
        for a in attributes
    }
    lines.append(
        "Strongest single field: "
        + "; ".join(f"for {a} {f} ({rate_text(v)})" for a, (f, v) in strongest.items())
        + "; all fields together: "
        + ", ".join(f"{a} {rate_text(predicts[a].get(ALL_INPUTS))}" for a in attributes)
        + "."
    )
    return "\n\n".join(lines)


def proxy_table(proxy: Mapping[str, Any]) -> dict[str, list[Any]]:
    predicts = proxy["predicts_protected_attribute"]
    attributes = list(predicts)
    fields = list(predicts[attributes[0]])
    substitution = proxy["substitution"]
    table: dict[str, list[Any]] = {
        "field": fields,
        **{f"predicts {a} (AUC)": [rate_text(predicts[a][f]) for f in fields] for a in attributes},
        "left out: ROC AUC change": [
            _signed(substitution.get(f, {}).get("roc_auc_change")) for f in fields
        ],
        "left out: approval-rate change by group": [
            "; ".join(
                f"{name} " + ", ".join(f"{g} {_signed(v)}" for g, v in groups.items())
                for name, groups in substitution[f]["approval_rate_change"].items()
            )
            if f in substitution
            else "-"
            for f in fields
        ],
    }
    return table


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


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
        "- No interest rate, debt or repayment data: affordability is approximate.\n"
        "- The data records no race, ethnicity or age: sex and marital status are the only "
        "protected attributes the search for less discriminatory alternatives and the audit "
        "can measure. Property_Area is audited as a proxy candidate (geography, the classic "
        "redlining proxy), not as a protected attribute; whether the model reads it is the "
        "stated rule's choice, shown above.\n"
        "- The search is over the declared candidates only (feature sets x the grid), scored "
        "on one set of folds of a small data set: differences of a few thousandths in ROC AUC "
        "or adverse impact ratio are within noise (see the intervals). The held-out and "
        "classic-split figures measure the chosen feature set, which was chosen on all rows."
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
