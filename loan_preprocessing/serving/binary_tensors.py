"""The Open Inference Protocol's binary tensor extension, as Triton specifies it.

A request whose `Inference-Header-Content-Length` header is present holds that
many bytes of JSON (the usual V2 request, where an input carries
`"parameters": {"binary_data_size": n}` instead of `data`), then each such
input's n bytes, in the order of the inputs: numbers as little-endian fixed-size
values (FP64, INT64, ...), BYTES as strings each preceded by its length in 4
little-endian bytes. Outputs asked for with `"binary_data": true` (or all, with
the request parameter `binary_data_output`) come back the same way after the
answer's JSON, whose length the answer's header of the same name gives.

Decoding gives each input the `data` list a JSON client would have sent, so
validation, limits and records are those of JSON V2. It stops at the request's
deadline (loan_preprocessing/deadline.py): the values are counted against the
row limit only once decoded, and the body limit allows millions of them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import repeat
from typing import Any, Final

import numpy as np

from loan_preprocessing import deadline

HEADER_LENGTH: Final = "inference-header-content-length"
BINARY_MEDIA_TYPE: Final = "application/octet-stream"
# Fixed-size datatypes: their little-endian numpy types.
FIXED_DTYPES: Final = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH: Final = struct.Struct("<I")


class BinaryTensorError(ValueError):
    """The binary part of a request is not what its JSON header says: a 400."""


def json_length(raw: str | None, body_size: int) -> int | None:
    """The JSON header's length given by the header's value `raw` (None: the whole
    body is JSON); BinaryTensorError when it is not a length within the body."""
    if raw is None:
        return None
    value = raw.strip()
    if not value.isdigit() or not 0 < int(value) <= body_size:
        raise BinaryTensorError(
            f"Inference-Header-Content-Length {value[:20]!r} is not a length within the "
            f"{body_size}-byte body"
        )
    return int(value)


def attach_inputs(request: dict[str, Any], binary: memoryview) -> None:
    """Give each input of the parsed JSON `request` that has a `binary_data_size`
    its values from `binary`, in order, as the `data` a JSON request would hold."""
    inputs = request.get("inputs")
    offset = 0
    for column in inputs if isinstance(inputs, list) else []:
        deadline.check()
        if not isinstance(column, dict):
            continue
        parameters = column.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        name = str(column.get("name"))[:64]
        if type(size) is not int or size < 0:
            raise BinaryTensorError(f"input {name!r}: binary_data_size must be a byte count")
        if "data" in column:
            raise BinaryTensorError(f"input {name!r}: binary_data_size given, and data too")
        if offset + size > len(binary):
            raise BinaryTensorError(
                f"input {name!r}: binary_data_size {size} runs past the body's "
                f"{len(binary)} binary bytes (at {offset})"
            )
        column["data"] = decode(name, column.get("datatype"), binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise BinaryTensorError(
            f"the body has {len(binary) - offset} binary bytes no input's binary_data_size covers"
        )


def decode(name: str, datatype: Any, raw: memoryview) -> list[Any]:
    """The values of one input's binary data."""
    if datatype == "BYTES":
        return _decode_strings(name, raw)
    dtype = FIXED_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BinaryTensorError(
            f"input {name!r}: datatype {str(datatype)[:20]!r} has no binary form"
        )
    if len(raw) % dtype.itemsize:
        raise BinaryTensorError(
            f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} values "
            f"({dtype.itemsize} bytes each)"
        )
    values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return values


def _decode_strings(name: str, raw: memoryview) -> list[Any]:
    # The walk from one length to the next is sequential, so it is a Python loop,
    # kept to a slice per value; each distinct value is decoded once (a column of
    # categories holds a handful). Measured against numpy (every byte's next
    # start at once, the walk followed by doubling): this is 2-3x faster at
    # 1000 rows. The request's deadline is checked between blocks of values.
    data = raw.tobytes()
    chunks: list[bytes] = []
    append = chunks.append
    unpack = _LENGTH.unpack_from
    offset, end = 0, len(data)
    try:
        while offset < end:
            deadline.check()
            for _ in repeat(None, deadline.CHECK_EVERY):
                start = offset + 4
                offset = start + unpack(data, offset)[0]
                append(data[start:offset])
                if offset >= end:
                    break
    except struct.error:
        raise BinaryTensorError(
            f"input {name!r}: a BYTES value's 4-byte length is cut short"
        ) from None
    if offset > end:
        raise BinaryTensorError(
            f"input {name!r}: a BYTES value of {len(chunks[-1]) + offset - end} bytes runs "
            "past the input's data"
        )
    deadline.check()
    try:
        text = {chunk: chunk.decode() for chunk in set(chunks)}
    except UnicodeDecodeError:
        raise BinaryTensorError(f"input {name!r}: a BYTES value is not UTF-8 text") from None
    return list(map(text.__getitem__, chunks))


def encode(datatype: str, values: Iterable[Any]) -> bytes:
    """One output's values in binary form (a missing text as an empty string)."""
    if datatype == "BYTES":
        listed = list(values)
        framed = {}  # each distinct value framed once
        for value in set(listed):
            data = b"" if value is None else str(value).encode()
            framed[value] = _LENGTH.pack(len(data)) + data
        return b"".join(map(framed.__getitem__, listed))
    return np.asarray(list(values), dtype=FIXED_DTYPES[datatype]).tobytes()


def wants_binary(output: dict[str, Any] | None, request_parameters: dict[str, Any] | None) -> bool:
    """Whether an output is asked for in binary: its own `binary_data`, else the
    request's `binary_data_output`."""
    own = output.get("parameters") if output else None
    if isinstance(own, dict) and "binary_data" in own:
        return own["binary_data"] is True
    return bool(request_parameters and request_parameters.get("binary_data_output") is True)


def binary_answer(body: dict[str, Any], binary_outputs: set[str]) -> tuple[bytes, int] | None:
    """The answer with the outputs named in `binary_outputs` moved after its JSON:
    (the body, the JSON's length), or None when no output is binary."""
    if not binary_outputs:
        return None
    import json

    parts = []
    for output in body["outputs"]:
        if output["name"] in binary_outputs:
            data = encode(output["datatype"], output.pop("data"))
            output["parameters"] = {"binary_data_size": len(data)}
            parts.append(data)
    header = json.dumps(body, separators=(",", ":")).encode()
    return header + b"".join(parts), len(header)
