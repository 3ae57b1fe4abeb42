"""The adverse-action notice of a recorded denial: what the applicant receives.

Rendered from the decision as it was recorded (the answer the service gave:
its id, time, status, reasons with their texts, counteroffer and Loan_ID) and
from the creditor's settings, as printable HTML and as plain text. The layout
follows Regulation B's sample form C-1 (12 CFR part 1002, Appendix C), with
these departures, each because of what the service knows:

- Part I lists the recorded reasons written out, not a checklist to tick: the
  reasons are the model's, exactly as recorded, at most four (1002.9(b)(2)).
- The applicant is named by the application's Loan_ID and the notice's
  reference: the service never receives a name or a postal address, so the
  lender's mailing system adds them.
- When the denial came with a counteroffer, it is stated in its own section,
  and the notice says it is the notice of action taken should the applicant
  not accept it (1002.9(a)(1)(iv)).
- Part II holds only the consumer-report paragraph (FCRA section 615(a)), and
  only when the settings say a consumer report was used; the form's paragraph
  on information from an affiliate or another outside source (section 615(b))
  and the credit-score disclosure are left out: the model reads no credit score
  and no affiliate's information.

The model's estimated probability is not printed: the form has no place for it
and it is not a reason. The only protected characteristics the notice names
are those of the ECOA paragraph of 1002.9(b)(1), which the regulation requires
word for word; a reason naming one is refused.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import jinja2
from pydantic import BaseModel, ConfigDict, Field

from loan_preprocessing.reason_codes import CODES, MAX_REASONS
from loan_preprocessing.schema import APPROVED, ID_COLUMN, PROTECTED_ATTRIBUTES, REJECTED

TITLE: Final = "Statement of Credit Denial, Termination or Change"
# 12 CFR 1002.9(b)(1), the notice every statement of action taken carries; the
# agency's name and address follow it.
ECOA_NOTICE: Final = (
    "The Federal Equal Credit Opportunity Act prohibits creditors from discriminating "
    "against credit applicants on the basis of race, color, religion, national origin, sex, "
    "marital status, age (provided the applicant has the capacity to enter into a binding "
    "contract); because all or part of the applicant's income derives from any public "
    "assistance program; or because the applicant has in good faith exercised any right "
    "under the Consumer Credit Protection Act. The Federal agency that administers "
    "compliance with this law concerning this creditor is:"
)
# The disclosure of FCRA section 615(a) (15 U.S.C. 1681m(a)), in the words of
# form C-1's Part II; the consumer reporting agency's name, address and
# telephone number follow it.
FCRA_NOTICE: Final = (
    "Our credit decision was based in whole or in part on information obtained in a report "
    "from the consumer reporting agency listed below. You have a right under the Fair Credit "
    "Reporting Act to know the information contained in your credit file at the consumer "
    "reporting agency. The reporting agency played no part in our decision and is unable to "
    "supply specific reasons why we have denied credit to you. You also have a right to a "
    "free copy of your report from the reporting agency, if you request it no later than 60 "
    "days after you receive this notice. In addition, if you find that any information "
    "contained in the report you receive is inaccurate or incomplete, you have the right to "
    "dispute the matter with the reporting agency."
)
ACTION_DENIED: Final = "Your application for credit has been denied."
COUNTEROFFER_NOTE: Final = (
    "If you do not accept this offer within the time we give you, this statement is our "
    "notice of action taken on your application."
)
# Width of the plain-text notice, for a letter or an e-mail.
TEXT_WIDTH: Final = 76


class NoticeError(ValueError):
    """The record is not one a notice can be rendered from; the message says why."""


class NoticeSettings(BaseModel):
    """Who sends the notice and who oversees them: the parts of the notice that
    are the creditor's, not the model's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    creditor_name: str = Field(min_length=1, max_length=200, examples=["Example Lending Co."])
    creditor_address: str = Field(
        min_length=1, max_length=500, examples=["1 Main Street\nSpringfield, IL 62701"]
    )
    creditor_phone: str | None = Field(default=None, max_length=40, examples=["800-555-0100"])
    # Appendix A of Regulation B names the agency for each kind of creditor.
    agency_name: str = Field(min_length=1, max_length=300, examples=["Federal Trade Commission"])
    agency_address: str = Field(
        min_length=1,
        max_length=500,
        examples=["Consumer Response Center\nWashington, DC 20580"],
    )
    # Whether the decision used a consumer report (the credit history is one):
    # then the FCRA 615(a) paragraph and the agency below are printed.
    consumer_report_used: bool = False
    reporting_agency_name: str | None = Field(default=None, max_length=200)
    reporting_agency_address: str | None = Field(default=None, max_length=500)
    reporting_agency_phone: str | None = Field(default=None, max_length=40)

    def model_post_init(self, context: Any) -> None:
        if self.consumer_report_used and not (
            self.reporting_agency_name and self.reporting_agency_address
        ):
            raise ValueError(
                "consumer_report_used needs reporting_agency_name and reporting_agency_address "
                "(FCRA 615(a): the notice names the consumer reporting agency)"
            )


@dataclass(frozen=True)
class NoticeReason:
    code: str
    text: str


@dataclass(frozen=True)
class NoticeFacts:
    """What a notice says about one recorded decision."""

    decision_id: str
    decided_at: datetime
    loan_id: str | None
    reasons: tuple[NoticeReason, ...]
    requested_amount: float | None
    requested_term: float | None
    offered_amount: float | None
    offered_term: float | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> NoticeFacts:
        """The facts of a decision record (the decision store's form: `decision_id`,
        `time`, `Loan_Status`, `reason_texts`, `application` and `answer`, the
        decision as answered). Raises NoticeError for an approval, or for a
        record whose reasons are not the table's."""
        status = record.get("Loan_Status")
        if status == APPROVED:
            raise NoticeError("the decision was an approval: an approval has no notice")
        if status != REJECTED:
            raise NoticeError(f"the record's Loan_Status is {status!r}, not a decision")
        reasons = tuple(
            NoticeReason(str(r["code"]), str(r["text"])) for r in record.get("reason_texts", [])
        )
        _check_reasons(reasons)
        answer = record.get("answer") or {}
        application = record.get("application") or {}
        amount, term = _offer(answer)
        return cls(
            decision_id=str(record["decision_id"]),
            decided_at=datetime.fromisoformat(str(record["time"])),
            loan_id=application.get(ID_COLUMN, answer.get(ID_COLUMN)),
            reasons=reasons,
            requested_amount=application.get("LoanAmount"),
            requested_term=application.get("Loan_Amount_Term"),
            offered_amount=amount,
            offered_term=term,
        )

    @property
    def has_counteroffer(self) -> bool:
        return self.offered_amount is not None or self.offered_term is not None


def _offer(answer: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The counteroffer of an answer in either recorded form: /predict's object,
    or the columns of V2 and CSV answers."""
    offer = answer.get("counteroffer")
    if isinstance(offer, Mapping):
        return offer.get("LoanAmount"), offer.get("Loan_Amount_Term")
    return answer.get("counteroffer_amount"), answer.get("counteroffer_term")


def _check_reasons(reasons: Sequence[NoticeReason]) -> None:
    if not reasons:
        raise NoticeError("the record holds no reasons: a denial's notice must state them")
    if len(reasons) > MAX_REASONS:
        raise NoticeError(
            f"the record holds {len(reasons)} reasons; a notice states at most {MAX_REASONS}, "
            "and never other reasons than those recorded"
        )
    for reason in reasons:
        declared = CODES.get(reason.code)
        if declared is None:
            raise NoticeError(f"reason code {reason.code!r} is not in the reason-code table")
        protected = set(declared.fields) & set(PROTECTED_ATTRIBUTES)
        if protected:
            raise NoticeError(f"reason {reason.code} names a protected characteristic")


def amount_words(amount: float) -> str:
    """A LoanAmount (thousands) in whole units of currency: 84.123 -> '84,123'."""
    return f"{round(amount * 1000):,}"


def term_words(months: float) -> str:
    return f"{months:g} months"


def _context(facts: NoticeFacts, settings: NoticeSettings) -> dict[str, Any]:
    amount, term = facts.requested_amount, facts.requested_term
    requested = "A loan"
    if amount is not None:
        requested += f" of {amount_words(amount)}"
    if term is not None:
        requested += f" over {term_words(term)}"
    if amount is None or term is None:
        requested += " (the application did not state every term)"
    offers = []
    if facts.offered_amount is not None:
        offers.append(f"A loan of {amount_words(facts.offered_amount)} at the term you asked for.")
    if facts.offered_term is not None:
        offers.append(f"The amount you asked for over a term of {term_words(facts.offered_term)}.")
    return {
        "title": TITLE,
        "date": facts.decided_at.date().isoformat(),
        "decided_at": facts.decided_at.isoformat(timespec="seconds"),
        "facts": facts,
        "requested": requested + ".",
        "action": ACTION_DENIED,
        "offers": offers,
        "counteroffer_note": COUNTEROFFER_NOTE,
        "settings": settings,
        "ecoa": ECOA_NOTICE,
        "fcra": FCRA_NOTICE,
    }


@dataclass(frozen=True)
class RenderedNotice:
    html: str
    text: str


def render_notice(record: Mapping[str, Any], settings: NoticeSettings) -> RenderedNotice:
    """The notice of a recorded denial, as HTML and as plain text. Raises
    NoticeError when the record is an approval or not a notice's material."""
    context = _context(NoticeFacts.from_record(record), settings)
    return RenderedNotice(_templates().get_template("html").render(context), _text(context))


def _text(context: dict[str, Any]) -> str:
    """The plain-text notice: the same sections, wrapped for a letter."""
    facts: NoticeFacts = context["facts"]
    settings: NoticeSettings = context["settings"]
    wrap = textwrap.TextWrapper(width=TEXT_WIDTH)
    lines = [context["title"].upper(), ""]
    lines += [f"Date: {context['date']}", f"Application: {facts.loan_id or '(no Loan_ID)'}"]
    lines += [f"Reference: {facts.decision_id}", ""]
    lines += wrap.wrap(f"Requested credit: {context['requested']}")
    lines += ["", f"Action taken: {context['action']}", ""]
    lines += ["PART I - PRINCIPAL REASONS FOR CREDIT DENIAL", ""]
    for reason in facts.reasons:
        lines += wrap.wrap(f"- {reason.text}")
    if context["offers"]:
        lines += ["", "WHAT WE CAN OFFER YOU INSTEAD", ""]
        lines += [part for offer in context["offers"] for part in wrap.wrap(f"- {offer}")]
        lines += ["", *wrap.wrap(context["counteroffer_note"])]
    if settings.consumer_report_used:
        lines += ["", "PART II - DISCLOSURE OF USE OF INFORMATION OBTAINED FROM AN OUTSIDE SOURCE"]
        lines += ["", *wrap.wrap(context["fcra"]), ""]
        lines += [f"Name: {settings.reporting_agency_name}"]
        lines += _address_lines("Address", settings.reporting_agency_address)
        if settings.reporting_agency_phone:
            lines += [f"Telephone number: {settings.reporting_agency_phone}"]
    lines += ["", "NOTICE", "", *wrap.wrap(context["ecoa"]), ""]
    lines += [settings.agency_name, *settings.agency_address.splitlines()]
    lines += ["", f"Creditor's name: {settings.creditor_name}"]
    lines += _address_lines("Creditor's address", settings.creditor_address)
    if settings.creditor_phone:
        lines += [f"Creditor's telephone number: {settings.creditor_phone}"]
    return "\n".join(lines) + "\n"


def _address_lines(label: str, address: str | None) -> list[str]:
    parts = (address or "").splitlines() or [""]
    indent = " " * (len(label) + 2)
    return [f"{label}: {parts[0]}", *(indent + p for p in parts[1:])]


_HTML: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
  @page { size: letter; margin: 0.75in; }
  body { font-family: "DejaVu Serif", Georgia, serif; font-size: 11pt; line-height: 1.35;
         max-width: 7in; margin: 0 auto; color: #000; }
  h1 { font-size: 14pt; text-align: center; margin-bottom: 1em; }
  h2 { font-size: 11pt; text-transform: uppercase; border-bottom: 1px solid #000;
       margin-top: 1.4em; }
  dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
  dt { font-weight: bold; }
  dd { margin: 0; }
  .address { white-space: pre-line; }
  section { break-inside: avoid; }
  footer { margin-top: 2em; font-size: 9pt; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<dl class="facts">
  <dt>Date</dt><dd>{{ date }}</dd>
  <dt>Application</dt><dd>{{ facts.loan_id or "(no Loan_ID)" }}</dd>
  <dt>Description of requested credit</dt><dd>{{ requested }}</dd>
  <dt>Description of action taken</dt><dd>{{ action }}</dd>
</dl>
<section id="reasons">
<h2>Part I &mdash; Principal reasons for credit denial</h2>
<ul>
{%- for reason in facts.reasons %}
  <li data-code="{{ reason.code }}">{{ reason.text }}</li>
{%- endfor %}
</ul>
</section>
{%- if offers %}
<section id="counteroffer">
<h2>What we can offer you instead</h2>
<ul>
{%- for offer in offers %}
  <li>{{ offer }}</li>
{%- endfor %}
</ul>
<p>{{ counteroffer_note }}</p>
</section>
{%- endif %}
{%- if settings.consumer_report_used %}
<section id="consumer-report">
<h2>Part II &mdash; Disclosure of use of information obtained from an outside source</h2>
<p>{{ fcra }}</p>
<dl class="facts">
  <dt>Name</dt><dd>{{ settings.reporting_agency_name }}</dd>
  <dt>Address</dt><dd class="address">{{ settings.reporting_agency_address }}</dd>
  {%- if settings.reporting_agency_phone %}
  <dt>Telephone number</dt><dd>{{ settings.reporting_agency_phone }}</dd>
  {%- endif %}
</dl>
</section>
{%- endif %}
<section id="notice">
<h2>Notice</h2>
<p>{{ ecoa }}</p>
<p class="address">{{ settings.agency_name }}
{{ settings.agency_address }}</p>
</section>
<section id="creditor">
<dl class="facts">
  <dt>Creditor's name</dt><dd>{{ settings.creditor_name }}</dd>
  <dt>Creditor's address</dt><dd class="address">{{ settings.creditor_address }}</dd>
  {%- if settings.creditor_phone %}
  <dt>Creditor's telephone number</dt><dd>{{ settings.creditor_phone }}</dd>
  {%- endif %}
</dl>
</section>
<footer>Reference {{ facts.decision_id }}, decided {{ decided_at }}.</footer>
</body>
</html>
"""


def _templates() -> jinja2.Environment:
    """The notice's templates; every value is escaped (a Loan_ID is the client's text)."""
    return jinja2.Environment(
        loader=jinja2.DictLoader({"html": _HTML}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
