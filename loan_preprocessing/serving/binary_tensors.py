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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Strings:
    """A decoded BYTES tensor: its distinct values, in order of first appearance,
    and each element's index into them (a column of categories holds a handful)."""

    codes: np.ndarray
    distinct: list[str]

    def __len__(self) -> int:
        return len(self.codes)

    def tolist(self) -> list[str]:
        return list(map(self.distinct.__getitem__, self.codes.tolist()))


# One input's decoded binary data: numbers as a (writable, native-order) array.
Tensor = np.ndarray | Strings


def attach_inputs(request: dict[str, Any], binary: memoryview) -> dict[int, Tensor]:
    """Decode each input of the parsed JSON `request` that has a `binary_data_size`
    from `binary`, in order; its values by the input's index. Each such input gets
    an empty `data` list, so the request validates as a JSON one would."""
    inputs = request.get("inputs")
    offset = 0
    tensors: dict[int, Tensor] = {}
    for index, column in enumerate(inputs if isinstance(inputs, list) else []):
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
        tensors[index] = decode_tensor(name, column.get("datatype"), binary[offset : offset + size])
        column["data"] = []
        offset += size
    if offset != len(binary):
        raise BinaryTensorError(
            f"the body has {len(binary) - offset} binary bytes no input's binary_data_size covers"
        )
    return tensors


def decode(name: str, datatype: Any, raw: memoryview) -> list[Any]:
    """The values of one input's binary data, as the `data` list of a JSON request."""
    return decode_tensor(name, datatype, raw).tolist()


def decode_tensor(name: str, datatype: Any, raw: memoryview) -> Tensor:
    """The values of one input's binary data: numbers as an array of the declared
    datatype, text as Strings; BinaryTensorError naming the input when the bytes
    are not a whole tensor of that datatype."""
    if datatype == "BYTES":
        return decode_strings(name, raw)
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
    # A copy in native order: the request's bytes are read-only and may be freed.
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def decode_strings(name: str, raw: memoryview) -> Strings:
    """A BYTES tensor: each value its length in 4 little-endian bytes, then that
    many bytes of UTF-8 text; every length checked against the buffer, which the
    values must fill exactly."""
    # Each length says where the next one is, so the walk is sequential: a Python
    # loop that only slices and numbers the values, each distinct value decoded
    # (and so checked as UTF-8) once. Measured on 1000-value columns: numpy's walk
    # (every byte's next start, then doubling) takes 1-2x the loop's walk, and the
    # rest done with numpy (the values as rows of a byte matrix, np.unique) took
    # 1.4x this whole loop; `python -m bench.v2_binary` times the walks. The
    # request's deadline is checked between blocks of values.
    data = raw.tobytes()
    position: dict[bytes, int] = {}
    codes: list[int] = []
    append = codes.append
    unpack = _LENGTH.unpack_from
    code_of = position.get
    offset, end = 0, len(data)
    start = 0
    try:
        while offset < end:
            deadline.check()
            for _ in repeat(None, deadline.CHECK_EVERY):
                start = offset + 4
                offset = start + unpack(data, offset)[0]
                value = data[start:offset]
                code = code_of(value)
                if code is None:
                    code = position[value] = len(position)
                append(code)
                if offset >= end:
                    break
    except struct.error:
        raise BinaryTensorError(
            f"input {name!r}: a BYTES value's 4-byte length is cut short"
        ) from None
    if offset > end:
        raise BinaryTensorError(
            f"input {name!r}: a BYTES value of {offset - start} bytes runs past the input's data"
        )
    deadline.check()
    try:
        distinct = [value.decode() for value in position]
    except UnicodeDecodeError:
        raise BinaryTensorError(f"input {name!r}: a BYTES value is not UTF-8 text") from None
    return Strings(np.array(codes, dtype=np.intp), distinct)


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
