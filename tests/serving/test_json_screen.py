"""The fast JSON screen changes no answer of the JSON guard: on generated bodies,
with and without repeated keys (also spelt differently, "\\u0041" and "A"), nested,
with strings full of quotes, colons and braces, and on mangled bytes, json_problem
answers exactly as the standard library's exact check; and the screen does clear
the usual bodies, so they skip the slow check."""

from __future__ import annotations

import json
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_preprocessing.schema import EXAMPLE_APPLICATION, LoanApplication
from loan_preprocessing.serving import json_screen, open_inference
from loan_preprocessing.serving.guards import MAX_LISTED_PROBLEMS, exact_json_problem, json_problem

FIELDS = list(LoanApplication.model_fields)


# Known keys as the records API has them, plus some that are hard to spell.
class _Object(list):  # type: ignore[type-arg]
    """(key, value) pairs of one JSON object, repeats allowed."""


KNOWN = frozenset({*FIELDS, "applications", "A", "é", "😀", 'q"uote', "back\\slash", "{"})
UNKNOWN = ["B", "a:b", "Gender ", "gender", "\x00", "\ud800", "}", "x,y", ""]
# Lone surrogates exist only as \\u escapes; both parsers must agree on them.
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
TRICKY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('":{}[],\\/ \t\n\x00\x1f\x7fAé😀'),
        st.sampled_from(SURROGATES),
        st.characters(),
    ),
    max_size=12,
)
KEYS = st.one_of(st.sampled_from(sorted(KNOWN)), st.sampled_from(UNKNOWN), TRICKY_TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TRICKY_TEXT,
)
# An object is a list of (key, value) pairs so that it can repeat a key.
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(KEYS, inner), max_size=5).map(_Object),
    ),
    max_leaves=30,
)


def _string(text: str, rng: random.Random) -> str:
    """`text` as a JSON string, each character written as itself or as a \\u
    escape (a pair above U+FFFF) as chance has it, where JSON allows either."""
    out = ['"']
    for char in text:
        plain = char not in '"\\' and ord(char) >= 0x20 and not 0xD800 <= ord(char) <= 0xDFFF
        if plain and rng.random() < 0.7:
            out.append(char)
        elif char in '"\\' and rng.random() < 0.5:
            out.append("\\" + char)
        elif ord(char) > 0xFFFF:
            high, low = divmod(ord(char) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04X}")
        else:
            out.append(f"\\u{ord(char):04{rng.choice('xX')}}")
    return "".join([*out, '"'])


def _space(rng: random.Random) -> str:
    return rng.choice(["", "", " ", "\n", "\t ", "\r\n"])


def _json(value: object, rng: random.Random) -> str:
    if isinstance(value, _Object):
        pairs = [f"{_space(rng)}{_string(k, rng)}{_space(rng)}:{_json(v, rng)}" for k, v in value]
        return "{" + ",".join(pairs) + _space(rng) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(item, rng) for item in value) + _space(rng) + "]"
    if isinstance(value, str):
        return _space(rng) + _string(value, rng)
    return _space(rng) + json.dumps(value)


def _body(value: object, seed: int) -> bytes:
    return _json(value, random.Random(seed)).encode("utf-8", "surrogatepass")


def _plain(value: object) -> bool:
    """No object repeats a key, every key is known, no ':' in any string and no
    lone surrogate: a body the screen should clear."""

    def strings_plain(text: str) -> bool:
        return ":" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)

    if isinstance(value, _Object):
        keys = [key for key, _ in value]
        return (
            len(set(keys)) == len(keys)
            and set(keys) <= KNOWN
            and all(strings_plain(k) and _plain(v) for k, v in value)
        )
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return strings_plain(value) if isinstance(value, str) else True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS, st.integers(0, 2**32))
def test_the_guard_answers_as_the_exact_check_on_generated_documents(document, seed):
    body = _body(document, seed)
    assert json_problem(body, KNOWN) == exact_json_problem(body, KNOWN)
    if _plain(document):
        assert json_screen.passes(body, KNOWN), body


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(KEYS, SCALARS), min_size=1, max_size=6).map(_Object),
    st.integers(0, 2**32),
)
def test_a_repeated_key_deep_in_a_request_is_named_as_before(row, seed):
    """A row in a records request, with one of its keys repeated (as chance spells it)."""
    rng = random.Random(seed)
    repeated = _Object([*row, (rng.choice(row)[0], None)])
    rng.shuffle(repeated)
    document = _Object([("applications", [_Object(row), repeated, _Object(row)])])
    body = _body(document, seed)
    answer = json_problem(body, KNOWN)
    assert answer == exact_json_problem(body, KNOWN)
    assert answer is not None
    assert answer["detail"][0]["type"] in ("duplicate_key", "json_invalid")


MANGLING = st.sampled_from(
    [
        *(bytes([c]) for c in b'{}[]:,"\\u09-.e+NaItn '),
        b"\x00",
        b"\xff",
        b"\xc3",
        b"\xef\xbb\xbf",
        b"\\ud800",
    ]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    DOCUMENTS,
    st.integers(0, 2**32),
    st.lists(st.tuples(st.floats(0, 1), st.booleans(), MANGLING), min_size=1, max_size=4),
)
def test_the_guard_answers_as_the_exact_check_on_mangled_bytes(document, seed, edits):
    """Bytes inserted or replaced anywhere: where the two parsers' grammars could
    differ (numbers, escapes, NaN, encodings, what follows the value)."""
    body = _body(document, seed)
    for where, replace, piece in edits:
        at = int(where * len(body))
        body = body[:at] + piece + body[at + replace :]
    assert json_problem(body, KNOWN) == exact_json_problem(body, KNOWN)


EXAMPLE = EXAMPLE_APPLICATION.model_dump(mode="json")


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"applications": [EXAMPLE]}).encode(),
        json.dumps({"applications": [EXAMPLE] * 1000}).encode(),
        json.dumps({"applications": [{**EXAMPLE, "Loan_ID": "{[{"}]}).encode(),
        json.dumps({"applications": [{**EXAMPLE, "Loan_ID": "\u00e9\U0001f600"}]}).encode(),
        json.dumps(
            {"applications": [{**EXAMPLE, "Loan_ID": "\u00e9"}]}, ensure_ascii=False
        ).encode(),
    ],
)
def test_the_screen_clears_usual_records_bodies(body):
    known = frozenset({*FIELDS, "applications"})
    assert json_screen.passes(body, known)
    assert exact_json_problem(body, known) is None


def test_the_screen_clears_a_v2_body():
    rows = [EXAMPLE] * 1000
    inputs = [
        {"name": name, "shape": [len(rows), 1], "datatype": "FP64", "data": [r[name] for r in rows]}
        for name in FIELDS
        if isinstance(EXAMPLE[name], float | int)
    ]
    body = json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()
    assert json_screen.passes(body, open_inference.KNOWN_KEYS)
    assert exact_json_problem(body, open_inference.KNOWN_KEYS) is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"A": 1, "\\u0041": 2}', "A"),
        (b'{"\\u00e9": 1, "\xc3\xa9": 2}', "é"),
        (b'{"\\ud83d\\ude00": 1, "\xf0\x9f\x98\x80": 2}', "😀"),
        (b'{"applications": [{"Gender": "Male"}, {"Gender": "a:b", "Gender": "Male"}]}', "Gender"),
        (b'{"applications": [{"Gender": "\\"Gender\\":"}], "applications": []}', "applications"),
    ],
)
def test_a_repeated_key_spelt_two_ways_is_refused_as_before(body, named):
    answer = json_problem(body, KNOWN)
    assert answer == exact_json_problem(body, KNOWN)
    assert answer is not None
    [problem] = answer["detail"]
    assert (problem["loc"], problem["type"]) == (["body", named], "duplicate_key")


@pytest.mark.parametrize("depth", [150, 199, 200, 201, 260, 2000])
def test_deep_nesting_is_answered_as_before(depth):
    for body in (b"[" * depth + b"]" * depth, b'{"A":' * depth + b"1" + b"}" * depth):
        assert json_problem(body, KNOWN) == exact_json_problem(body, KNOWN)


@pytest.mark.parametrize("digits", [4299, 4300, 4301, 5000])
@pytest.mark.parametrize("limit", [None, 1000, 0])
def test_long_integers_are_answered_as_before(digits, limit):
    """Python refuses integers longer than its limit (4300 digits unless changed)."""
    saved = sys.get_int_max_str_digits()
    try:
        if limit is not None:
            sys.set_int_max_str_digits(limit)
        for sign in (b"", b"-"):
            body = b'{"A": ' + sign + b"7" * digits + b"}"
            assert json_problem(body, KNOWN) == exact_json_problem(body, KNOWN)
    finally:
        sys.set_int_max_str_digits(saved)


def test_too_many_unknown_keys_are_listed_as_before():
    body = json.dumps({"applications": [{f"k{i}": 1 for i in range(MAX_LISTED_PROBLEMS + 1)}]})
    answer = json_problem(body.encode(), KNOWN)
    assert answer == exact_json_problem(body.encode(), KNOWN)
    assert answer is not None and answer["total"] == MAX_LISTED_PROBLEMS + 1
