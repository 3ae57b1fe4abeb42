"""The adverse-action reason codes: the fixed table, declared once as data.

Each code names a factor the model scores, in words an applicant understands,
and the application fields it comes from (the applicant's own field names,
never the model's derived features). The model's features map to codes here;
the API schema, the README's table and the tests all read these names.

The texts say which factor weighed against the application, not which way to
move it, except where the model is monotonic in it (credit history): the model
is free in income and loan size, and an applicant with an income in a band it
scores lower than the reference is not helped by "income too low".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The commentary to Regulation B 1002.9(b)(2): more than four reasons is not
# likely to be helpful to the applicant.
MAX_REASONS: Final = 4
# Between a decision's codes where they are one text (CSV cells, V2 outputs).
REASON_SEPARATOR: Final = ";"


# The application fields an applicant can change within this application: the
# loan's own terms. Credit history, income, education and where the property is
# are facts about the applicant, not choices made in applying; a reason that
# names only those is not one the applicant can act on by applying differently.
CHANGEABLE_FIELDS: Final = ("LoanAmount", "Loan_Amount_Term")


@dataclass(frozen=True)
class ReasonCode:
    code: str
    text: str
    # The application fields the factor is computed from, the one an applicant
    # most directly controls first.
    fields: tuple[str, ...]

    @property
    def changeable_fields(self) -> tuple[str, ...]:
        """The fields of this factor the applicant can change in this application."""
        return tuple(f for f in self.fields if f in CHANGEABLE_FIELDS)

    @property
    def actionable(self) -> bool:
        """Whether the applicant can move this factor by changing the application
        (a smaller amount or another term), as opposed to facts about them."""
        return bool(self.changeable_fields)


_INSTALMENT_FIELDS: Final = (
    "LoanAmount",
    "Loan_Amount_Term",
    "ApplicantIncome",
    "CoapplicantIncome",
)

REASON_CODES: Final = (
    ReasonCode(
        "CREDIT_HISTORY", "Credit history does not meet our guidelines", ("Credit_History",)
    ),
    ReasonCode("NO_CREDIT_HISTORY", "No credit history was provided", ("Credit_History",)),
    ReasonCode(
        "LOAN_TO_INCOME",
        "Size of the monthly repayment relative to income",
        _INSTALMENT_FIELDS,
    ),
    ReasonCode("INCOME", "Level of income", ("ApplicantIncome", "CoapplicantIncome")),
    ReasonCode("LOAN_AMOUNT", "Amount of credit requested", ("LoanAmount",)),
    ReasonCode("LOAN_TERM", "Term of the loan requested", ("Loan_Amount_Term",)),
    ReasonCode("PROPERTY_AREA", "Location of the property", ("Property_Area",)),
    ReasonCode("EDUCATION", "Education level", ("Education",)),
)
CODES: Final = {reason.code: reason for reason in REASON_CODES}

# The code of each model feature (features.MODEL_FEATURES): contributions of
# features with the same code are added before reasons are ranked.
FEATURE_REASONS: Final[dict[str, str]] = {
    "CreditHistory": "CREDIT_HISTORY",
    "IsSemiurban": "PROPERTY_AREA",
    "IsGraduate": "EDUCATION",
    "LogTotalIncome": "INCOME",
    "LogApplicantIncome": "INCOME",
    "LogLoanAmount": "LOAN_AMOUNT",
    "LogInstalmentToIncome": "LOAN_TO_INCOME",
    "Loan_Amount_Term": "LOAN_TERM",
}

# A code said another way when the application left all of its fields empty:
# the model scores an unknown credit history as its own value, and the reason
# must say what was scored ("not provided", not "does not meet").
WHEN_NOT_PROVIDED: Final = {"CREDIT_HISTORY": "NO_CREDIT_HISTORY"}
