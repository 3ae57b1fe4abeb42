"""The Open Inference Protocol (V2) endpoint: a Triton client, unchanged, gets the
same decisions as /predict, with the same key, header, metrics and 400s."""

from __future__ import annotations

import json
import math
import re

import httpx
import numpy as np
import pytest

from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import EXAMPLE_APPLICATION, ID_COLUMN, TARGET_COLUMN
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from loan_preprocessing.serving.open_inference import (
    INFER_PATH,
    INPUT_DATATYPES,
    InferenceRequest,
    RequestError,
    columns_of,
)
from tests.support.server import bentoml_serve

API_KEY = "v2-test-key-0123456789"
EXAMPLE = EXAMPLE_APPLICATION.model_dump()


def v2_request(rows: list[dict], datatypes: dict[str, str] | None = None) -> dict:
    """The V2 JSON body a pandas-codec client sends: one [n, 1] input per column.
    An INT64 column's values go as whole numbers or null, as a client encoding an
    integer column sends them (pandas' JSON export writes them as floats)."""
    names = list(rows[0])
    kinds = datatypes or INPUT_DATATYPES

    def cell(value: object, datatype: str) -> object:
        if datatype == "INT64" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows), 1],
                "datatype": kinds.get(name, "BYTES"),
                "data": [cell(row[name], kinds.get(name, "BYTES")) for row in rows],
            }
            for name in names
        ]
    }


def test_input_datatypes_come_from_the_schema():
    assert INPUT_DATATYPES["ApplicantIncome"] == "FP64"
    assert INPUT_DATATYPES["Credit_History"] == "INT64"
    assert INPUT_DATATYPES["Property_Area"] == INPUT_DATATYPES[ID_COLUMN] == "BYTES"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["inputs"].append(dict(b["inputs"][0])), "appears more than once"),
        (lambda b: b["inputs"][0].update(shape=[2, 3]), "shape must be [n] or [n, 1]"),
        (lambda b: b["inputs"][0].update(shape=[5, 1]), "shape says 5 values, data has 2"),
        (lambda b: b["inputs"][1].update(shape=[1], data=["x"]), "has 1 rows, the others 2"),
    ],
)
def test_a_malformed_batch_is_refused_with_a_reason(change, message):
    body = v2_request([EXAMPLE, EXAMPLE])
    change(body)
    with pytest.raises(RequestError, match=re.escape(message)):
        columns_of(InferenceRequest.model_validate(body), max_rows=10)


def test_rows_past_the_limit_are_refused():
    with pytest.raises(RequestError, match="at most 1 rows"):
        columns_of(InferenceRequest.model_validate(v2_request([EXAMPLE, EXAMPLE])), max_rows=1)


def test_nan_and_empty_text_are_missing_and_the_target_is_ignored():
    rows = [{**EXAMPLE, "LoanAmount": math.nan, "Gender": "", TARGET_COLUMN: "Y"}]
    columns, n = columns_of(InferenceRequest.model_validate(v2_request(rows)), max_rows=10)
    assert n == 1
    assert columns["LoanAmount"] == columns["Gender"] == [None]
    assert TARGET_COLUMN not in columns


@pytest.fixture(scope="module")
def v2_server(real_model_tag, tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2")
    env = {"LOAN_WORKERS": "1", "LOAN_API_KEY": API_KEY, "LOAN_MODEL_TAG": real_model_tag}
    with bentoml_serve(env=env, log_path=folder / "serve.log") as server:
        yield server


AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.mark.e2e
@pytest.mark.real_data
def test_a_triton_client_gets_the_decisions_of_predict(v2_server, real_test_rows):
    """tritonclient builds the request (numpy in, NaN for a missing number) and
    reads the answer; it equals /predict's on the 367 real rows, bit for bit."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(v2_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("loan_approval", headers=AUTH)
    inputs = []
    for name, datatype in INPUT_DATATYPES.items():
        values = [row[name] for row in real_test_rows]
        if datatype == "BYTES":  # a missing text is an empty string in a tensor
            array = np.array(["" if v is None else v for v in values], dtype=object)
            array = array.reshape(-1, 1)
        else:
            kind = np.float64 if datatype == "FP64" else np.int64
            if datatype == "INT64" and any(v is None for v in values):
                datatype, kind = "FP64", np.float64  # a tensor of ints cannot hold a gap
            array = np.array([np.nan if v is None else v for v in values], dtype=kind)
            array = array.reshape(-1, 1)
        column = triton.InferInput(name, list(array.shape), datatype)
        column.set_data_from_numpy(array, binary_data=False)
        inputs.append(column)
    names = (ID_COLUMN, TARGET_COLUMN, "probability", "reasons")
    wanted = [triton.InferRequestedOutput(n, binary_data=False) for n in names]
    answer = client.infer("loan_approval", inputs, outputs=wanted, headers=AUTH)

    expected = httpx.post(
        f"{v2_server.url}/predict", json={"applications": real_test_rows}, headers=AUTH, timeout=60
    )
    decisions = expected.json()
    for d in decisions:  # the V2 output holds the codes, as the CSV answers do
        d["reasons"] = REASON_SEPARATOR.join(r["code"] for r in d["reasons"])
    assert any(d["reasons"] for d in decisions)
    for name in names:
        got = answer.as_numpy(name).ravel().tolist()
        if name != "probability":
            got = [v.decode() if isinstance(v, bytes) else v for v in got]
        assert got == [d[name] for d in decisions], name
    version = expected.headers[MODEL_TAG_HEADER].partition(":")[2]
    assert answer.get_response()["model_version"] == version


@pytest.mark.e2e
def test_a_bad_value_is_a_400_naming_row_and_field(v2_server):
    body = v2_request([EXAMPLE, {**EXAMPLE, "ApplicantIncome": -1}])
    response = httpx.post(f"{v2_server.url}{INFER_PATH}", json=body, headers=AUTH)
    assert response.status_code == 400
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["inputs", "ApplicantIncome", 1]
    assert "greater than or equal to 0" in problem["msg"]
    assert response.headers[MODEL_TAG_HEADER]


@pytest.mark.e2e
def test_the_key_guards_inference_but_not_the_probes(v2_server):
    body = v2_request([EXAMPLE])
    assert httpx.post(f"{v2_server.url}{INFER_PATH}", json=body).status_code == 401
    for probe in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(f"{v2_server.url}{probe}").status_code == 200
    assert httpx.get(f"{v2_server.url}/v2/models/loan_approval").status_code == 401


@pytest.mark.e2e
def test_metadata_lists_every_input_and_the_served_version(v2_server):
    metadata = httpx.get(f"{v2_server.url}/v2/models/loan_approval", headers=AUTH).json()
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == INPUT_DATATYPES
    answered = httpx.post(f"{v2_server.url}{INFER_PATH}", json=v2_request([EXAMPLE]), headers=AUTH)
    assert answered.status_code == 200
    assert metadata["versions"] == [answered.json()["model_version"]]
    assert answered.headers[MODEL_TAG_HEADER] == f"loan_approval:{metadata['versions'][0]}"


@pytest.mark.e2e
def test_v2_decisions_are_counted_in_the_metrics(v2_server):
    def decided() -> float:
        text = httpx.get(f"{v2_server.url}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("loan_decisions_total{")
        )

    before = decided()
    body = v2_request([EXAMPLE] * 3)
    assert httpx.post(f"{v2_server.url}{INFER_PATH}", json=body, headers=AUTH).status_code == 200
    assert decided() == before + 3


@pytest.mark.e2e
def test_the_json_guards_apply_to_v2_bodies(v2_server):
    """A repeated key is refused as on /predict; the protocol's own keys are not
    unknown fields."""
    good = json.dumps(v2_request([EXAMPLE] * 2))
    repeated = good.replace('{"inputs": [', '{"inputs": [], "inputs": [', 1)
    url = f"{v2_server.url}{INFER_PATH}"
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = httpx.post(url, content=repeated, headers=headers)
    assert answer.status_code == 400
    assert "more than once" in answer.json()["error"]
    assert httpx.post(url, content=good, headers=headers).status_code == 200
