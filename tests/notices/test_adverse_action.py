"""The adverse-action notice, rendered from decision records the real scorer made.

The records have the decision store's form (decision_id, time, Loan_Status,
reason_texts, application, answer). The HTML is printed to PDF by headless
Chromium (Debian's package) and the PDF's text is checked with pdftotext: the
reasons exactly as recorded and in their order, the counteroffer, the ECOA
paragraph with the agency, the FCRA paragraph only when a consumer report was
used, and no protected characteristic outside the ECOA paragraph.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loan_preprocessing.decide import Scorer
from loan_preprocessing.notices.adverse_action import (
    ECOA_NOTICE,
    FCRA_NOTICE,
    NoticeError,
    NoticeSettings,
    render_notice,
)
from loan_preprocessing.schema import (
    APPROVED,
    CATEGORY_LEVELS,
    FEATURE_COLUMNS,
    PROTECTED_ATTRIBUTES,
    REJECTED,
    Decision,
    LoanApplication,
)

SETTINGS = NoticeSettings(
    creditor_name="Example Lending Co.",
    creditor_address="1 Main Street\nSpringfield, IL 62701",
    creditor_phone="800-555-0100",
    agency_name="Federal Trade Commission",
    agency_address="Consumer Response Center\nWashington, DC 20580",
)
WITH_REPORT = SETTINGS.model_copy(
    update={
        "consumer_report_used": True,
        "reporting_agency_name": "Example Credit Bureau",
        "reporting_agency_address": "PO Box 1000\nAtlanta, GA 30348",
        "reporting_agency_phone": "800-555-0199",
    }
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
)


def record_of(application: LoanApplication, decision: Decision, number: int) -> dict:
    """A decision record as the decision store gives it (records/store.as_record)."""
    return {
        "decision_id": f"{number:032x}",
        "time": datetime(2026, 12, 3, 12, 0, number % 60, tzinfo=UTC).isoformat(),
        "Loan_Status": decision.Loan_Status,
        "probability": decision.probability,
        "reasons": [r.code for r in decision.reasons],
        "reason_texts": [{"code": r.code, "text": r.text} for r in decision.reasons],
        "application": {"Loan_ID": application.Loan_ID}
        | {name: getattr(application, name) for name in FEATURE_COLUMNS},
        "answer": json.loads(decision.model_dump_json()),
    }


@pytest.fixture(scope="module")
def records(real_model, real_test_rows) -> list[dict]:
    stored, _ = real_model
    scorer = Scorer.from_model(stored)
    applications = [LoanApplication.model_validate(r) for r in real_test_rows]
    decided = scorer.decide(applications)
    return [record_of(a, d, i) for i, (a, d) in enumerate(zip(applications, decided, strict=True))]


@pytest.fixture(scope="module")
def denials(records) -> list[dict]:
    return [r for r in records if r["Loan_Status"] == REJECTED]


def with_counteroffer(denials: list[dict], kind: str) -> dict:
    return next(r for r in denials if r["answer"]["counteroffer"][kind] is not None)


def words(text: str) -> str:
    """Text with runs of white space as one space (PDF lines and HTML wrap anywhere)."""
    return re.sub(r"\s+", " ", text).strip()


def test_every_denial_renders_its_recorded_reasons_in_order(denials):
    assert len(denials) > 30
    for record in denials:
        notice = render_notice(record, SETTINGS)
        texts = [r["text"] for r in record["reason_texts"]]
        assert 1 <= len(texts) <= 4
        listed = re.findall(r'<li data-code="(\w+)">([^<]*)</li>', notice.html)
        assert listed[: len(texts)] == [(r["code"], r["text"]) for r in record["reason_texts"]]
        text = notice.text
        positions = [text.index(f"- {t}") for t in texts]
        assert positions == sorted(positions)
        assert record["decision_id"] in text and record["decision_id"] in notice.html


def test_an_approval_has_no_notice(records):
    approval = next(r for r in records if r["Loan_Status"] == APPROVED)
    with pytest.raises(NoticeError, match="approval"):
        render_notice(approval, SETTINGS)


def test_the_counteroffer_is_stated_when_there_was_one(denials):
    record = with_counteroffer(denials, "LoanAmount")
    amount = record["answer"]["counteroffer"]["LoanAmount"]
    text = words(render_notice(record, SETTINGS).text)
    assert f"A loan of {round(amount * 1000):,} at the term you asked for." in text
    assert "notice of action taken" in text
    record = with_counteroffer(denials, "Loan_Amount_Term")
    term = record["answer"]["counteroffer"]["Loan_Amount_Term"]
    assert f"over a term of {term:g} months" in words(render_notice(record, SETTINGS).text)
    none = next(
        r
        for r in denials
        if r["answer"]["counteroffer"]["LoanAmount"] is None
        and r["answer"]["counteroffer"]["Loan_Amount_Term"] is None
    )
    assert "OFFER YOU INSTEAD" not in render_notice(none, SETTINGS).text


def test_the_ecoa_paragraph_always_and_the_fcra_paragraph_only_with_a_report(denials):
    record = denials[0]
    plain = words(render_notice(record, SETTINGS).text)
    assert words(ECOA_NOTICE) in plain and "Federal Trade Commission" in plain
    assert "Fair Credit Reporting Act" not in plain
    reported = words(render_notice(record, WITH_REPORT).text)
    assert words(FCRA_NOTICE) in reported and "Example Credit Bureau" in reported
    with pytest.raises(ValueError, match="reporting_agency_name"):
        NoticeSettings(**{**SETTINGS.model_dump(), "consumer_report_used": True})


def test_no_protected_characteristic_outside_the_ecoa_paragraph(denials):
    # The fields, the characteristics and the levels that name one (Married's
    # Yes/No name nothing on their own).
    forbidden = {*PROTECTED_ATTRIBUTES, *PROTECTED_ATTRIBUTES.values(), *CATEGORY_LEVELS["Gender"]}
    for record in denials:
        text = words(render_notice(record, WITH_REPORT).text).replace(words(ECOA_NOTICE), "")
        for word in forbidden:
            assert not re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE), (word, record)


def test_a_record_that_is_not_a_notice_is_refused(denials):
    record = denials[0]
    five = [*record["reason_texts"]] * 5
    with pytest.raises(NoticeError, match="at most 4"):
        render_notice({**record, "reason_texts": five[:5]}, SETTINGS)
    with pytest.raises(NoticeError, match="no reasons"):
        render_notice({**record, "reason_texts": []}, SETTINGS)
    with pytest.raises(NoticeError, match="not in the reason-code table"):
        render_notice({**record, "reason_texts": [{"code": "MARRIED", "text": "x"}]}, SETTINGS)


def test_client_text_is_escaped_in_the_html(denials):
    record = denials[0]
    hostile = {**record, "application": {**record["application"], "Loan_ID": "<script>x</script>"}}
    html = render_notice(hostile, SETTINGS).html
    assert "<script>" not in html and "&lt;script&gt;" in html


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None or shutil.which("pdftotext") is None:
        pytest.skip(
            "CHROMIUM OR PDFTOTEXT ABSENT: the notice's print test needs Debian's chromium and "
            "poppler-utils (`apt-get install -y chromium poppler-utils`; "
            "`make test-setup` does it as root)"
        )
    return found


def test_the_html_prints_to_a_pdf_that_says_what_the_record_says(denials, tmp_path):
    chromium = _chromium()
    record = with_counteroffer(denials, "LoanAmount")
    page = tmp_path / "notice.html"
    page.write_text(render_notice(record, WITH_REPORT).html)
    pdf = tmp_path / "notice.pdf"
    printed = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0 and pdf.is_file(), printed.stderr[-2000:]
    assert pdf.read_bytes().startswith(b"%PDF")
    text = words(
        subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert "Statement of Credit Denial, Termination or Change" in text
    for reason in record["reason_texts"]:
        assert words(reason["text"]) in text
    amount = record["answer"]["counteroffer"]["LoanAmount"]
    assert f"{round(amount * 1000):,}" in text
    assert words(ECOA_NOTICE) in text and words(FCRA_NOTICE) in text
    assert "Example Lending Co." in text and record["decision_id"] in text
    Path(tmp_path / "notice.txt").write_text(text)
