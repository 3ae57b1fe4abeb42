"""The binary tensor extension and the rest of V2: the codec on its own, then a
Triton client, unchanged, sending binary tensors to a real `bentoml serve`."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loan_preprocessing.inputs.columns import ColumnsValidationError, validate_columns
from loan_preprocessing.schema import CATEGORY_LEVELS, EXAMPLE_APPLICATION, ID_COLUMN
from loan_preprocessing.serving.binary_tensors import (
    FIXED_DTYPES,
    BinaryTensorError,
    attach_inputs,
    binary_answer,
    decode,
    decode_strings,
    encode,
    json_length,
    wants_binary,
)
from loan_preprocessing.serving.open_inference import (
    EXTENSIONS,
    INFER_PATH,
    INPUT_DATATYPES,
    SERVER_NAME,
    InferenceRequest,
    RequestError,
    columns_of,
    parse_request,
)
from tests.support.server import bentoml_serve

API_KEY = "binary-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OUTPUTS = ("Loan_ID", "Loan_Status", "probability", "reasons")


def strings(*values: str) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def test_numbers_are_little_endian_and_text_is_length_prefixed():
    assert decode("x", "FP64", memoryview(np.array([1.5, np.nan], "<f8").tobytes()))[0] == 1.5
    assert decode("x", "INT64", memoryview(np.array([1, -2], "<i8").tobytes())) == [1, -2]
    assert decode("x", "BYTES", memoryview(strings("Urban", "", "é"))) == ["Urban", "", "é"]
    assert encode("BYTES", ["Y", None]) == strings("Y", "")
    assert encode("FP64", [0.1]) == struct.pack("<d", 0.1)


@pytest.mark.parametrize(
    ("datatype", "raw", "message"),
    [
        ("FP64", b"\0" * 7, "7 bytes is not a whole number of FP64 values"),
        ("BYTES", b"\1\0", "4-byte length is cut short"),
        ("BYTES", struct.pack("<I", 9) + b"abc", "a BYTES value of 9 bytes runs past"),
        ("BYTES", struct.pack("<I", 1) + b"\xff", "not UTF-8"),
        ("MADEUP", b"", "has no binary form"),
    ],
)
def test_malformed_binary_data_names_the_input(datatype, raw, message):
    with pytest.raises(BinaryTensorError, match=message) as caught:
        decode("Property_Area", datatype, memoryview(raw))
    assert "'Property_Area'" in str(caught.value)


class Refused(ValueError):
    """The reference decoder's refusal; its message is the kind of problem."""


def reference_strings(raw: bytes) -> list[str]:
    """The BYTES layout read the plain way: the framing first (each value's 4-byte
    length, then that many bytes, filling the buffer exactly), then each value as
    UTF-8."""
    chunks, offset = [], 0
    while offset < len(raw):
        if len(raw) - offset < 4:
            raise Refused("4-byte length is cut short")
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise Refused(f"a BYTES value of {size} bytes runs past")
        chunks.append(raw[offset : offset + size])
        offset += size
    try:
        return [chunk.decode("utf-8") for chunk in chunks]
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None


def _framed(chunks: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(c)) + c for c in chunks)


# Text with NUL, non-ASCII and astral characters; few distinct values, as in a
# column of categories, or many.
_TEXTS = st.lists(
    st.one_of(st.sampled_from(["", "Urban", "Semiurban", "\0", "é", "\0a", "a\0"]), st.text()),
    max_size=40,
)
# Bytes that break UTF-8 inside a value: a stray continuation byte, an invalid
# byte, a surrogate, an overlong NUL, a character cut short.
_BAD_UTF8 = st.sampled_from([b"\x80", b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\xe2\x82"])


@st.composite
def _bytes_buffers(draw: st.DrawFn) -> bytes:
    """A BYTES tensor's data: valid, or broken in one of the ways a client or a
    truncated body breaks it, or any bytes at all."""
    chunks = [t.encode() for t in draw(_TEXTS)]
    raw = _framed(chunks)
    kind = draw(st.sampled_from(["valid", "cut", "extra", "length", "utf8", "split", "any"]))
    if kind == "cut" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "extra":
        return raw + draw(st.binary(min_size=1, max_size=6))
    if kind == "length" and chunks:
        at = draw(st.integers(0, len(chunks) - 1))
        start = sum(4 + len(c) for c in chunks[:at])
        length = draw(st.sampled_from([0xFFFFFFFF, 0x80000000, len(raw), len(chunks[at]) + 1]))
        return raw[:start] + struct.pack("<I", length) + raw[start + 4 :]
    if kind == "utf8":
        at = draw(st.integers(0, len(chunks)))
        return _framed([*chunks[:at], b"ok" + draw(_BAD_UTF8), *chunks[at:]])
    if kind == "split":
        # A two-byte character cut between two values: the whole is UTF-8, each
        # value is not.
        return _framed([*chunks, "é".encode()[:1], "é".encode()[1:]])
    if kind == "any":
        return draw(st.binary(max_size=64))
    return raw


@settings(max_examples=600, deadline=None)
@given(_bytes_buffers())
def test_the_bytes_decoder_agrees_with_the_plain_reading(raw):
    """The same values as the reference on every valid buffer; the same refusal
    (the same kind of problem, naming the input) on every invalid one."""
    try:
        expected: list[str] | Refused = reference_strings(raw)
    except Refused as refused:
        expected = refused
    if isinstance(expected, Refused):
        with pytest.raises(BinaryTensorError, match=str(expected)) as caught:
            decode_strings("Property_Area", memoryview(raw))
        assert str(caught.value).startswith("input 'Property_Area': ")
    else:
        decoded = decode_strings("Property_Area", memoryview(raw))
        assert decoded.tolist() == expected
        assert len(set(decoded.distinct)) == len(decoded.distinct)
        assert decode("Property_Area", "BYTES", memoryview(raw)) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(FIXED_DTYPES)),
    st.binary(max_size=80),
)
def test_numbers_are_read_as_their_declared_datatype(datatype, raw):
    """Whole values of the datatype, little-endian, exactly; any other length refused."""
    dtype = FIXED_DTYPES[datatype]
    if datatype == "BOOL":
        raw = bytes(b & 1 for b in raw)  # numpy's bool is a 0 or 1 byte
    if len(raw) % dtype.itemsize:
        with pytest.raises(BinaryTensorError, match="is not a whole number of"):
            decode("LoanAmount", datatype, memoryview(raw))
        return
    values = decode("LoanAmount", datatype, memoryview(raw))
    expected = [
        struct.unpack_from("<" + _STRUCT_CODES[datatype], raw, i)[0]
        for i in range(0, len(raw), dtype.itemsize)
    ]
    assert [type(v) for v in values] == [type(v) for v in expected]
    # NaN is a NaN whatever its payload (which a conversion may quiet).
    assert all(v == e or (v != v and e != e) for v, e in zip(values, expected, strict=True))


_STRUCT_CODES = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b",
    "INT16": "h", "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip


def _cell(name: str, datatype: str, clean: bool) -> st.SearchStrategy:
    """One value of a column: any value its datatype holds, or (`clean`) one the
    schema accepts."""
    required = name in ("Education", "Property_Area", "ApplicantIncome", "CoapplicantIncome")
    if name == ID_COLUMN and datatype == "BYTES":
        return st.text("LP0123456789", max_size=12) if clean else st.text(max_size=12)
    if datatype == "BYTES":
        levels = [*CATEGORY_LEVELS.get(name, ("5720", "0")), *([] if required else [""])]
        return (
            st.sampled_from(levels)
            if clean
            else st.one_of(st.sampled_from([*levels, "Maybe"]), st.text())
        )
    if datatype == "INT64":
        return st.sampled_from([0, 1]) if clean else st.sampled_from([0, 1, 2, -1])
    if clean:
        return st.sampled_from([12.0, 360.0, 5720.0, *([] if required else [float("nan")])])
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 360.0, -1.0])
    )


@st.composite
def _batches(draw: st.DrawFn) -> dict[str, tuple[str, list]]:
    """Columns by name: (datatype, values). Mostly the schema's datatype, at times
    another (text for a number, a number for a category)."""
    rows = draw(st.integers(1, 12))
    clean = draw(st.booleans())
    batch = {}
    for name, usual in INPUT_DATATYPES.items():
        datatype = (
            usual if clean else draw(st.sampled_from([usual] * 4 + ["BYTES", "FP64", "INT64"]))
        )
        cells = _cell(name, datatype, clean)
        batch[name] = (datatype, draw(st.lists(cells, min_size=rows, max_size=rows)))
    return batch


def _verdict(request: InferenceRequest) -> object:
    """What the service makes of a request: its validated columns, or the error."""
    try:
        columns, count = columns_of(request, max_rows=100)
        values = validate_columns(columns, count).values
    except RequestError as exc:
        return ("request", str(exc))
    except ColumnsValidationError as exc:
        return ("validation", str(exc), exc.problems, exc.total)
    # NaN is missing in a float column: compared as None.
    return {
        name: [None if type(v) is float and v != v else v for v in column.tolist()]
        for name, column in values.items()
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_a_binary_request_is_validated_as_its_json_twin(batch):
    """Every column sent in binary, or as JSON (NaN for a missing number, "" for a
    missing text, as tritonclient sends them), in the schema's datatype or another:
    the same validated columns, or the same refusal, word for word."""
    inputs, parts = [], []
    for name, (datatype, values) in batch.items():
        if datatype == "BYTES":
            raw = _framed([v.encode() for v in values])
        else:
            raw = np.array(values, dtype=FIXED_DTYPES[datatype]).tobytes()
        parts.append(raw)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [len(values), 1],
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = json.dumps({"inputs": inputs}).encode()
    binary = parse_request(header + b"".join(parts), str(len(header)))
    as_json = InferenceRequest.model_validate(
        {
            "inputs": [
                {"name": n, "datatype": d, "shape": [len(v), 1], "data": v}
                for n, (d, v) in batch.items()
            ]
        }
    )
    verdict = _verdict(binary)
    event("accepted" if isinstance(verdict, dict) else verdict[0])
    assert verdict == _verdict(as_json)


def _header(*columns: tuple[str, str, int]) -> dict:
    return {
        "inputs": [
            {"name": n, "datatype": d, "shape": [1, 1], "parameters": {"binary_data_size": s}}
            for n, d, s in columns
        ]
    }


def test_sizes_must_cover_the_binary_part_exactly():
    with pytest.raises(BinaryTensorError, match="'LoanAmount': binary_data_size 8 runs past"):
        attach_inputs(_header(("LoanAmount", "FP64", 8)), memoryview(b"\0" * 4))
    with pytest.raises(BinaryTensorError, match="3 binary bytes no input"):
        attach_inputs(_header(("LoanAmount", "FP64", 8)), memoryview(b"\0" * 11))
    both = _header(("LoanAmount", "FP64", 8))
    both["inputs"][0]["data"] = [1.0]
    with pytest.raises(BinaryTensorError, match="'LoanAmount': binary_data_size given, and data"):
        attach_inputs(both, memoryview(b"\0" * 8))


@pytest.mark.parametrize("raw", ["", "-1", "abc", "1e3", "999999"])
def test_the_header_length_must_be_within_the_body(raw):
    with pytest.raises(BinaryTensorError, match="Inference-Header-Content-Length"):
        json_length(raw, 100)


def test_a_binary_request_parses_as_its_json_twin():
    header = json.dumps(_header(("ApplicantIncome", "FP64", 8), ("Property_Area", "BYTES", 9)))
    body = header.encode() + struct.pack("<d", 5720.0) + strings("Urban")
    parsed = parse_request(body, str(len(header)))
    assert [c.binary.tolist() for c in parsed.inputs if c.binary is not None] == [
        [5720.0],
        ["Urban"],
    ]
    with pytest.raises(BinaryTensorError, match="are not JSON"):
        parse_request(body, "3")


def test_binary_outputs_follow_the_json_in_order():
    assert wants_binary({"name": "a", "parameters": {"binary_data": True}}, None)
    assert not wants_binary(
        {"name": "a", "parameters": {"binary_data": False}}, {"binary_data_output": True}
    )
    assert wants_binary(None, {"binary_data_output": True}) and not wants_binary(None, None)
    body = {
        "outputs": [
            {"name": "Loan_Status", "datatype": "BYTES", "shape": [2, 1], "data": ["Y", "N"]},
            {"name": "probability", "datatype": "FP64", "shape": [2, 1], "data": [0.5, 0.25]},
        ]
    }
    packed = binary_answer(body, {"Loan_Status", "probability"})
    assert packed is not None
    content, length = packed
    header = json.loads(content[:length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [10, 16]
    assert content[length:] == strings("Y", "N") + struct.pack("<2d", 0.5, 0.25)
    assert binary_answer(body, set()) is None


@pytest.fixture(scope="module")
def server(real_model_tag, tmp_path_factory):
    folder = tmp_path_factory.mktemp("binary")
    env = {"LOAN_WORKERS": "1", "LOAN_API_KEY": API_KEY, "LOAN_MODEL_TAG": real_model_tag}
    with bentoml_serve(env=env, log_path=folder / "serve.log") as running:
        yield running


def _triton_inputs(triton, rows: list[dict], binary: bool) -> list:
    """The columns as tritonclient builds them from numpy (NaN for a missing
    number, an empty string for a missing text)."""
    inputs = []
    for name, datatype in INPUT_DATATYPES.items():
        values = [row[name] for row in rows]
        if datatype == "BYTES":
            array = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            kind = np.float64 if datatype == "FP64" else np.int64
            if datatype == "INT64" and any(v is None for v in values):
                datatype, kind = "FP64", np.float64  # a tensor of ints cannot hold a gap
            array = np.array([np.nan if v is None else v for v in values], dtype=kind)
        column = triton.InferInput(name, [len(rows), 1], datatype)
        column.set_data_from_numpy(array.reshape(-1, 1), binary_data=binary)
        inputs.append(column)
    return inputs


def _values(result, name: str) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(name).ravel()]


@pytest.mark.e2e
@pytest.mark.real_data
def test_binary_tensors_get_the_json_answers_bit_for_bit(server, real_test_rows):
    """tritonclient with binary_data=True, in and out, on the 367 real rows, also
    under the versioned route: the same answers as JSON V2, probabilities to the
    last bit."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))

    def infer(binary: bool, version: str = ""):
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
        return client.infer(
            "loan_approval",
            _triton_inputs(triton, real_test_rows, binary),
            outputs=outputs,
            model_version=version,
            headers=dict(AUTH),  # tritonclient adds its own headers to the dict
        )

    as_json = infer(False)
    version = as_json.get_response()["model_version"]
    for as_binary in (infer(True), infer(True, version)):
        assert as_binary.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0
        assert (
            as_binary.as_numpy("probability").tobytes() == as_json.as_numpy("probability").tobytes()
        )
        for name in OUTPUTS:
            assert _values(as_binary, name) == _values(as_json, name), name
    assert any(_values(as_json, "reasons"))


@pytest.mark.e2e
def test_a_malformed_binary_section_is_a_400_naming_the_input(server):
    header = json.dumps(_header(("ApplicantIncome", "FP64", 8))).encode()
    answer = httpx.post(
        f"{server.url}{INFER_PATH}",
        content=header + b"\0" * 5,
        headers={
            **AUTH,
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert answer.status_code == 400
    assert "'ApplicantIncome'" in answer.json()["error"]


@pytest.mark.e2e
def test_binary_requests_need_the_key_and_are_validated_as_json_ones(server):
    example = EXAMPLE_APPLICATION.model_dump()
    header = json.dumps(_header(("ApplicantIncome", "FP64", 8))).encode()
    body = header + struct.pack("<d", -1.0)
    headers = {"Inference-Header-Content-Length": str(len(header))}
    assert httpx.post(f"{server.url}{INFER_PATH}", content=body, headers=headers).status_code == 401
    columns = [(n, INPUT_DATATYPES[n]) for n in example if n != "ApplicantIncome"]
    request = {
        "inputs": [
            {"name": n, "datatype": d, "shape": [1, 1], "data": [example[n]]} for n, d in columns
        ]
        + _header(("ApplicantIncome", "FP64", 8))["inputs"]
    }
    header = json.dumps(request).encode()
    answer = httpx.post(
        f"{server.url}{INFER_PATH}",
        content=header + struct.pack("<d", -1.0),
        headers={**AUTH, "Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == ["inputs", "ApplicantIncome", 0]


@pytest.mark.e2e
def test_server_metadata_and_the_versioned_routes(server):
    import bentoml

    assert httpx.get(f"{server.url}/v2", headers=AUTH).json() == {
        "name": SERVER_NAME,
        "version": bentoml.__version__,
        "extensions": list(EXTENSIONS),
    }
    metadata = httpx.get(f"{server.url}/v2/models/loan_approval", headers=AUTH).json()
    [version] = metadata["versions"]
    versioned = f"{server.url}/v2/models/loan_approval/versions"
    assert httpx.get(f"{versioned}/{version}", headers=AUTH).json() == metadata
    assert httpx.get(f"{versioned}/{version}/ready", headers=AUTH).status_code == 200
    for answer in (
        httpx.get(f"{versioned}/0000", headers=AUTH),
        httpx.post(f"{versioned}/0000/infer", json={"inputs": []}, headers=AUTH),
    ):
        assert answer.status_code == 404
        assert "'0000'" in answer.json()["error"] and repr(version) in answer.json()["error"]
    assert httpx.get(f"{versioned}/{version}").status_code == 401
