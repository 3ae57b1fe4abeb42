"""The request and response schema of the loan-approval API, declared once.

The service, the training code and the tests import these names; nothing else
repeats a column name or a category level.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from types import EllipsisType
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from loan_preprocessing.reason_codes import CHANGEABLE_FIELDS, CODES, MAX_REASONS

ID_COLUMN: Final = "Loan_ID"
TARGET_COLUMN: Final = "Loan_Status"
APPROVED: Final = "Y"
REJECTED: Final = "N"

# Category levels exactly as they appear in the Loan Prediction data set.
CATEGORY_LEVELS: Final[dict[str, tuple[str, ...]]] = {
    "Gender": ("Male", "Female"),
    "Married": ("Yes", "No"),
    "Dependents": ("0", "1", "2", "3+"),
    "Education": ("Graduate", "Not Graduate"),
    "Self_Employed": ("Yes", "No"),
    "Property_Area": ("Urban", "Semiurban", "Rural"),
}
CATEGORICAL_COLUMNS: Final = tuple(CATEGORY_LEVELS)
NUMERIC_COLUMNS: Final = (
    "ApplicantIncome",
    "CoapplicantIncome",
    "LoanAmount",
    "Loan_Amount_Term",
    "Credit_History",
)
# Column order of the data set's CSV files (without the id and the target).
FEATURE_COLUMNS: Final = (
    "Gender",
    "Married",
    "Dependents",
    "Education",
    "Self_Employed",
    "ApplicantIncome",
    "CoapplicantIncome",
    "LoanAmount",
    "Loan_Amount_Term",
    "Credit_History",
    "Property_Area",
)
REQUIRED_COLUMNS: Final = ("Education", "ApplicantIncome", "CoapplicantIncome", "Property_Area")
# The application fields the model reads: its features are computed from these
# alone (the feature code derives them; train.py records them with every model).
MODEL_FIELDS: Final = (
    "ApplicantIncome",
    "CoapplicantIncome",
    "LoanAmount",
    "Loan_Amount_Term",
    "Credit_History",
    "Property_Area",
    "Education",
)
# The columns every batch (a CSV file, a V2 request) must carry, in file order:
# the required fields and every field the model reads. A value may be missing in
# a row, but a whole column absent is almost always a broken export, and reading
# it as "unknown" would change decisions without a word; a column sent with
# every value empty says "unknown" explicitly.
BATCH_COLUMNS: Final = tuple(
    name for name in FEATURE_COLUMNS if name in REQUIRED_COLUMNS or name in MODEL_FIELDS
)

# Protected characteristics: the application fields that name a prohibited basis
# (field -> characteristic). The Equal Credit Opportunity Act's Regulation B
# (12 CFR 1002.6(b)) forbids taking sex or marital status into account in
# evaluating creditworthiness, as do many other jurisdictions. The API still
# accepts them (the data set's records carry them, and fairness monitoring needs
# them), but the model never sees them, directly or through a derived feature.
PROTECTED_ATTRIBUTES: Final[dict[str, str]] = {"Gender": "sex", "Married": "marital status"}
PROHIBITED_BASIS_RULE: Final = "ECOA, Regulation B (12 CFR 1002.6(b))"
# Audited with the protected attributes but not forbidden: where the property is
# is a legitimate underwriting fact, and a classic proxy for protected groups.
PROXY_ATTRIBUTES: Final[dict[str, str]] = {"Property_Area": "geography, a classic proxy"}
CREDIT_HISTORY_LEVELS: Final = (0, 1)

# What can be reported to have happened to a decided application (POST /outcomes).
# Bad: the loan was not repaid as agreed. Withdrawn: the applicant took no loan,
# so there is no repayment to judge (counted, never good or bad).
OutcomeName = Literal["repaid", "delinquent", "defaulted", "withdrawn"]
OUTCOMES: Final = get_args(OutcomeName)
BAD_OUTCOMES: Final = frozenset({"delinquent", "defaulted"})
NO_PERFORMANCE_OUTCOMES: Final = frozenset({"withdrawn"})

# Generous plausibility ceilings: they keep absurd values (and float overflow in
# derived features) out of the model without rejecting any real application.
MAX_MONTHLY_INCOME: Final = 10_000_000.0
MAX_LOAN_AMOUNT: Final = 1_000_000.0  # in thousands
MAX_LOAN_TERM_MONTHS: Final = 600.0
# Floors as well: a term of 1e-300 months passes "> 0" but overflows the
# instalment to infinity, and the model cannot score it (found by hypothesis).
MIN_LOAN_AMOUNT: Final = 0.001  # one unit of currency, in thousands
MIN_LOAN_TERM_MONTHS: Final = 1.0


# An identifier is echoed in every answer, file and log line that carries the
# decision. Control characters (C0 such as CR, LF, TAB and NUL; DEL; C1) and the
# Unicode line and paragraph separators split or corrupt CSV lines, logs and
# terminals, and no real identifier holds one: they are refused in every path
# (the JSON and V2 APIs, CSV uploads, offline scoring, the Spark job).
ID_FORBIDDEN_CHARACTERS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_ID_LENGTH: Final = 64


def _printable_identifier(value: str) -> str:
    found = ID_FORBIDDEN_CHARACTERS.search(value)
    if found is not None:
        raise PydanticCustomError(
            "identifier_character",
            "an identifier must not hold control characters or line separators; found "
            "{character} at position {position}",
            {"character": f"U+{ord(found.group()):04X}", "position": found.start()},
        )
    return value


def _dependents_from_number(value: object) -> object:
    """Accept the whole numbers 0-3 as well as the data set's strings ("3+" means 3
    or more); pandas exports 1.0 for 1 when the column has gaps."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value in (0, 1, 2, 3):
        return "3+" if value == 3 else str(int(value))
    return value


def _not_a_boolean(value: object) -> object:
    """JSON true is not the number 1 (pydantic's Literal[0, 1] would take it)."""
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "Input should be 0 or 1, not true or false")
    return value


# What Dependents accepts, as published in the OpenAPI document.
DEPENDENTS_JSON_SCHEMA: Final = {
    "anyOf": [
        {"enum": list(CATEGORY_LEVELS["Dependents"]), "type": "string"},
        {"enum": [0, 1, 2, 3], "type": "integer"},
        {"type": "null"},
    ],
}


def _number(
    default: EllipsisType | None = ...,
    *,
    description: str,
    example: float,
    gt: float | None = None,
    ge: float | None = None,
    le: float,
) -> Any:
    """A numeric field; `...` as the default makes it required."""
    # strict: a JSON string such as "5000" is a caller's mistake, not a number.
    return Field(
        default,
        description=description,
        examples=[example],
        gt=gt,
        ge=ge,
        le=le,
        strict=True,
        allow_inf_nan=False,
    )


class LoanApplication(BaseModel):
    """One loan application, with the data set's own field names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Not a field: the request this application came in, set by the service
    # (serving/recording.py), so decisions batched together find their answer.
    _request: Any = PrivateAttr(default=None)

    Loan_ID: Annotated[str, AfterValidator(_printable_identifier)] | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="Caller's identifier, echoed back (no control characters or line separators).",
        examples=["LP001015"],
    )
    Gender: Literal["Male", "Female"] | None = Field(
        default=None,
        description="Applicant's gender. A protected characteristic: the model does not "
        "use it; it is kept for fairness monitoring.",
        examples=["Male"],
    )
    Married: Literal["Yes", "No"] | None = Field(
        default=None,
        description="Whether the applicant is married. A protected characteristic: the "
        "model does not use it; it is kept for fairness monitoring.",
        examples=["Yes"],
    )
    Dependents: Annotated[
        Literal["0", "1", "2", "3+"] | None,
        BeforeValidator(_dependents_from_number),
        WithJsonSchema(DEPENDENTS_JSON_SCHEMA),
    ] = Field(
        default=None,
        description='Number of dependents: "0", "1", "2", "3+" (or the integers 0-3).',
        examples=["0"],
    )
    Education: Literal["Graduate", "Not Graduate"] = Field(
        description="Applicant's education.", examples=["Graduate"]
    )
    Self_Employed: Literal["Yes", "No"] | None = Field(
        default=None, description="Whether the applicant is self-employed.", examples=["No"]
    )
    ApplicantIncome: float = _number(
        description="Applicant's monthly income.", example=5720, ge=0, le=MAX_MONTHLY_INCOME
    )
    CoapplicantIncome: float = _number(
        description="Co-applicant's monthly income (0 when there is none).",
        example=0,
        ge=0,
        le=MAX_MONTHLY_INCOME,
    )
    LoanAmount: float | None = _number(
        None,
        description="Loan amount, in thousands.",
        example=110,
        ge=MIN_LOAN_AMOUNT,
        le=MAX_LOAN_AMOUNT,
    )
    Loan_Amount_Term: float | None = _number(
        None,
        description="Term of the loan in months.",
        example=360,
        ge=MIN_LOAN_TERM_MONTHS,
        le=MAX_LOAN_TERM_MONTHS,
    )
    Credit_History: Annotated[Literal[0, 1] | None, BeforeValidator(_not_a_boolean)] = Field(
        default=None,
        description="1 if the credit history meets the guidelines, else 0 (or null); "
        "not true/false.",
        examples=[1],
    )
    Property_Area: Literal["Urban", "Semiurban", "Rural"] = Field(
        description="Where the property is.", examples=["Urban"]
    )


# The codes as a JSON Schema enum, so a client can switch on them.
ReasonCodeName = Literal[tuple(CODES)]  # type: ignore[valid-type]
_EXAMPLE_REASON: Final = CODES["CREDIT_HISTORY"]


class Reason(BaseModel):
    """A principal reason for a rejection (loan_preprocessing/reason_codes.py)."""

    model_config = ConfigDict(frozen=True)

    code: ReasonCodeName = Field(  # type: ignore[valid-type]
        description="Stable code of the reason (the README lists every code).",
        examples=[_EXAMPLE_REASON.code],
    )
    fields: tuple[str, ...] = Field(
        description="The application fields the reason is about.",
        examples=[list(_EXAMPLE_REASON.fields)],
    )
    text: str = Field(
        description="The reason in plain language, for the applicant.",
        examples=[_EXAMPLE_REASON.text],
    )
    actionable: bool = Field(
        description="Whether the applicant can act on this reason within this application: "
        f"true when it names a field of the loan's own terms ({', '.join(CHANGEABLE_FIELDS)}), "
        "false when it names only facts about the applicant (credit history, income, "
        "education, where the property is).",
        examples=[_EXAMPLE_REASON.actionable],
    )


# The terms a counteroffer may propose, in months: the terms of the Loan
# Prediction data, the ones lenders there offer.
STANDARD_TERMS_MONTHS: Final = (12.0, 36.0, 60.0, 84.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0)
# Offered amounts are whole units of currency, and LoanAmount is in thousands:
# an offer is a whole number of thousandths of a LoanAmount.
COUNTEROFFER_UNITS_PER_LOAN_AMOUNT: Final = 1000.0
_EXAMPLE_ADDRESSED: Final = ("LOAN_TO_INCOME",)


class Counteroffer(BaseModel):
    """What the model approves instead of a denied application, on the loan's own
    terms: each of the two changes alone, everything else as applied for."""

    model_config = ConfigDict(frozen=True)

    LoanAmount: float | None = Field(
        description="The largest loan amount below the requested one (in thousands, a whole "
        "unit of currency) that the model approves at the requested term; null when no "
        "smaller amount is approved, or the application gave no amount.",
        examples=[84.123],
    )
    Loan_Amount_Term: float | None = Field(
        description="The term in months, among the standard terms "
        f"({', '.join(f'{t:g}' for t in STANDARD_TERMS_MONTHS)}), nearest to the requested "
        "one (ties: the shorter) at which the requested amount is approved; null when "
        "none is.",
        examples=[480.0],
    )
    addresses: tuple[ReasonCodeName, ...] = Field(  # type: ignore[valid-type]
        description="The codes of this denial's reasons that the counteroffer changes: those "
        "naming the loan amount (when an amount is offered) or the term (when a term is). "
        "Empty when there is no offer, or when the offer works through a factor that is "
        "not among the principal reasons.",
        examples=[list(_EXAMPLE_ADDRESSED)],
    )


NO_COUNTEROFFER: Final = Counteroffer(LoanAmount=None, Loan_Amount_Term=None, addresses=())


class Decision(BaseModel):
    """The model's decision on one application."""

    decision_id: str | None = Field(
        default=None,
        description="The id under which this decision is recorded (GET /decisions/{id}); "
        "null only when the service runs with decision records turned off.",
        examples=["01a23bb66c939bc9f24e4ec32651f402"],
    )
    Loan_ID: str | None = Field(
        description="The application's Loan_ID, if it had one.", examples=["LP001015"]
    )
    Loan_Status: Literal["Y", "N"] = Field(description="Y: approve, N: reject.", examples=["Y"])
    probability: float = Field(
        ge=0.0,
        le=1.0,
        description="Estimated probability of approval, P(Loan_Status = Y).",
        examples=[0.83],
    )
    reasons: list[Reason] = Field(
        max_length=MAX_REASONS,
        description=f"For a rejection (N): its principal reasons, at most {MAX_REASONS}, "
        "most important first; only factors that lowered this application's score are "
        "named. Empty for an approval (Y).",
        examples=[
            [
                {
                    "code": r.code,
                    "fields": list(r.fields),
                    "text": r.text,
                    "actionable": r.actionable,
                }
                for r in (CODES["CREDIT_HISTORY"], CODES["LOAN_TO_INCOME"])
            ]
        ],
    )
    counteroffer: Counteroffer | None = Field(
        default=None,
        description="For a rejection (N): what the model approves instead on the loan's own "
        "terms (a smaller amount, another standard term), each null when nothing of the "
        "kind is approved. null for an approval (Y).",
        examples=[
            {"LoanAmount": 84.123, "Loan_Amount_Term": 480.0, "addresses": ["LOAN_TO_INCOME"]}
        ],
    )


_DECISION_LIST: Final = TypeAdapter(list[Decision])


def decisions(rows: list[dict[str, object]]) -> list[Decision]:
    """Decisions from {"Loan_ID", "Loan_Status", "probability", "reasons",
    "counteroffer"} dicts, validated in
    one pydantic-core call: about 40% cheaper than constructing them one by one,
    which matters at 1000 rows a request."""
    return _DECISION_LIST.validate_python(rows)


EXAMPLE_APPLICATION: Final = LoanApplication(
    Loan_ID="LP001015",
    Gender="Male",
    Married="Yes",
    Dependents="0",
    Education="Graduate",
    Self_Employed="No",
    ApplicantIncome=5720,
    CoapplicantIncome=0,
    LoanAmount=110,
    Loan_Amount_Term=360,
    Credit_History=1,
    Property_Area="Urban",
)


DEFAULT_MAX_APPLICATIONS: Final = 5_000
# A request refused with more errors than this lists the first ones, then one
# error of type MORE_ERRORS_TYPE whose message starts with how many were left out.
MAX_LISTED_ERRORS: Final = 20
MORE_ERRORS_TYPE: Final = "more_errors"


def _without_labels(json_data: str | bytes | bytearray) -> str | bytes | bytearray:
    """The body without a TARGET_COLUMN key in its applications: records exported
    from the labelled training.csv score as they are (as /predict_csv ignores
    that column), the label is not an input. Only a body that mentions the
    target pays for a parse; the rest reach pydantic untouched."""
    raw = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
    if TARGET_COLUMN.encode() not in raw:
        return json_data
    try:
        data = json.loads(raw)
    except ValueError:
        return json_data  # pydantic reports it
    rows = data.get("applications") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return json_data
    data["applications"] = [
        {k: v for k, v in row.items() if k != TARGET_COLUMN} if isinstance(row, dict) else row
        for row in rows
    ]
    return json.dumps(data)


def _first_errors(title: str, json_data: str | bytes | bytearray, total: int) -> ValidationError:
    """The first MAX_LISTED_ERRORS errors of the applications in `json_data`
    (validated one by one, stopping there) and a MORE_ERRORS_TYPE error
    counting the rest of `total`."""
    data = json.loads(json_data)  # valid JSON: invalid JSON is a single error
    rows = data.get("applications") if isinstance(data, dict) else None
    listed: list[InitErrorDetails] = []
    for index, row in enumerate(rows if isinstance(rows, list) else []):
        try:
            LoanApplication.model_validate(row)
        except ValidationError as exc:
            listed += [
                {
                    "type": PydanticCustomError(error["type"], error["msg"]),
                    "loc": ("applications", index, *error["loc"]),
                    "input": error["input"],
                }
                for error in exc.errors(include_url=False)
            ]
        if len(listed) >= MAX_LISTED_ERRORS:
            break
    listed = listed[:MAX_LISTED_ERRORS]
    more = PydanticCustomError(
        MORE_ERRORS_TYPE, "{count} more errors not listed", {"count": total - len(listed)}
    )
    return ValidationError.from_exception_data(
        title, [*listed, {"type": more, "loc": (), "input": None}]
    )


def predict_request_model(max_applications: int = DEFAULT_MAX_APPLICATIONS) -> type[BaseModel]:
    """The /predict request body, with the per-request row limit the service is
    configured with. Unknown top-level keys are refused and `applications` has no
    default: a typo must not silently score an example applicant."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        @classmethod
        def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
            """pydantic's, except that the applications' labels are ignored (see
            `_without_labels`), and that a body with more than MAX_LISTED_ERRORS
            errors raises with the first of them and a count of the rest: pydantic
            holds each error in ~1 kB, and one 4 MB body can hold 100,000."""
            json_data = _without_labels(json_data)
            try:
                return super().model_validate_json(json_data, **kwargs)
            except ValidationError as exc:
                if exc.error_count() <= MAX_LISTED_ERRORS:
                    raise
                total = exc.error_count()
            raise _first_errors(cls.__name__, json_data, total) from None

        applications: list[LoanApplication] = Field(
            min_length=1,
            max_length=max_applications,
            description=f"The applications to decide, 1 to {max_applications} per request; "
            "the answer keeps their order.",
            examples=[[EXAMPLE_APPLICATION.model_dump()]],
        )

    return PredictRequest


# Decision ids as answered: 32 lowercase hex digits (records/tables.py's ID_LENGTH).
DECISION_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
EXAMPLE_DECISION_ID: Final = "0193a5c1e2f04b8d9c7e6a5b4c3d2e1f"
# Longest person identifier and override rationale accepted (longer: a 400).
MAX_PERSON_LENGTH: Final = 128
MAX_RATIONALE_LENGTH: Final = 2_000


class ReportedOutcome(BaseModel):
    """What happened to a decided application (POST /outcomes): its decision by
    `decision_id`, or by `Loan_ID` (the newest delivered decision on it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: str | None = Field(
        default=None,
        pattern=DECISION_ID_PATTERN,
        description="The decision's id, as answered. Give this or Loan_ID.",
        examples=[EXAMPLE_DECISION_ID],
    )
    Loan_ID: Annotated[str, AfterValidator(_printable_identifier)] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="The application's Loan_ID: its newest delivered decision. "
        "Give this or decision_id.",
        examples=["LP001015"],
    )
    outcome: OutcomeName = Field(description="What happened to the loan.", examples=["repaid"])
    observed_on: date = Field(
        strict=True,
        description="The day the outcome was observed (ISO date, not in the future).",
        examples=["2026-11-30"],
    )

    @field_validator("observed_on")
    @classmethod
    def _not_in_the_future(cls, value: date) -> date:
        # A day of grace: the caller's today may be ahead of UTC's.
        if value > datetime.now(UTC).date() + timedelta(days=1):
            raise ValueError("an outcome cannot be observed in the future")
        return value

    @model_validator(mode="after")
    def _one_decision(self) -> ReportedOutcome:
        if (self.decision_id is None) == (self.Loan_ID is None):
            raise PydanticCustomError(
                "decision_reference", "give exactly one of decision_id and Loan_ID"
            )
        return self


class OverrideRequest(BaseModel):
    """A person's change of a recorded decision's final status (POST
    /decisions/{decision_id}/override); the model's decision is kept as it was."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: Annotated[str, AfterValidator(_printable_identifier)] = Field(
        min_length=1,
        max_length=MAX_PERSON_LENGTH,
        description="Who decided: the caller's identifier of the person (not checked).",
        examples=["officer-17"],
    )
    final_status: Literal["Y", "N"] = Field(
        description="The status that stands after the override.", examples=["Y"]
    )
    rationale: str = Field(
        min_length=1,
        max_length=MAX_RATIONALE_LENGTH,
        description="Why the decision is changed (required).",
        examples=["Income verified with the employer; the stated income was monthly net."],
    )

    @field_validator("rationale")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a rationale must say something")
        return value.strip()
