"""Applications validated a column at a time, by the rules of `LoanApplication`.

Bulk paths (CSV files, the Spark job, columnar protocols) receive columns, not
records; building a pydantic object per row costs more than the model. Here every
rule comes from `LoanApplication`'s own field metadata, never declared again:

- a numeric field is checked with numpy against the field's annotated bounds
  (`Ge`, `Le`, `Gt`, `Lt`), finiteness and nullability;
- any other field is validated by pydantic itself, once per distinct value;
- a value the vectorised check refuses, or of a type it does not handle, is
  handed to pydantic alone, so each problem carries pydantic's own message.

`tests/inputs/test_columns.py` proves with hypothesis that a row is refused here exactly
when `LoanApplication` refuses it, naming the same fields and messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin

import annotated_types
import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from loan_preprocessing import deadline
from loan_preprocessing.schema import LoanApplication

# The same bound as the JSON API's and the CSV reader's error lists.
MAX_REPORTED_PROBLEMS: Final = 20
# pydantic's words for a required field that is absent, and for an extra one.
MISSING_MESSAGE: Final = "Field required"
EXTRA_MESSAGE: Final = "Extra inputs are not permitted"


@dataclass(frozen=True)
class CodedColumn:
    """A column given as its distinct values and each row's index into them (what
    a CSV reader that converts each distinct cell once already holds); -1 is a
    missing value. Validated once per distinct value."""

    codes: np.ndarray
    distinct: list[object]

    def __len__(self) -> int:
        return len(self.codes)


# One column's values, as a list of JSON-like values or a numpy array.
Values = Sequence[object] | np.ndarray
Column = Values | CodedColumn


@dataclass(frozen=True, order=True)
class FieldProblem:
    """One refused value: its row (0-based), its field, pydantic's message."""

    row: int
    field: str
    message: str


class ColumnsValidationError(ValueError):
    """Some rows are invalid: `.problems` holds the first MAX_REPORTED_PROBLEMS in
    row order (fields in schema order within a row), `.total` counts them all."""

    def __init__(self, problems: list[FieldProblem], total: int) -> None:
        self.problems = problems[:MAX_REPORTED_PROBLEMS]
        self.total = total
        first = self.problems[0]
        more = total - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        super().__init__(f"row {first.row}, {first.field}: {first.message}{suffix}")


@dataclass(frozen=True)
class ValidatedColumns:
    """Valid applications as columns, one per `LoanApplication` field: numbers as
    float64 (NaN where missing), everything else as an object array (None where
    missing), with the values pydantic would hold ("1" for a Dependents of 1)."""

    rows: int
    values: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return self.rows

    def take(self, rows: np.ndarray) -> ValidatedColumns:
        """The given rows (indices, in that order) as validated columns."""
        return ValidatedColumns(len(rows), {n: v[rows] for n, v in self.values.items()})

    def applications(self) -> Iterator[LoanApplication]:
        """The same rows as `LoanApplication`s, for paths that need objects."""
        names = list(self.values)
        cells = [_python_values(self.values[n]) for n in names]
        for row in zip(*cells, strict=True):
            yield LoanApplication.model_construct(**dict(zip(names, row, strict=True)))


@dataclass(frozen=True)
class _FieldRule:
    """What `LoanApplication` requires of one field, read from its FieldInfo."""

    name: str
    info: FieldInfo

    @cached_property
    def item(self) -> TypeAdapter[Any]:
        """pydantic's validator for one value of the field, constraints included."""
        # The FieldInfo itself carries the constraints (and Dependents' number
        # conversion); Any because the annotation is only known at run time.
        annotation: Any = Annotated[self.info.annotation, self.info]
        return TypeAdapter(annotation)

    @cached_property
    def items(self) -> TypeAdapter[list[Any]]:
        """The same validator over a list: one pydantic-core call for many values."""
        annotation: Any = list[Annotated[self.info.annotation, self.info]]  # type: ignore[name-defined]
        return TypeAdapter(annotation)

    @cached_property
    def nullable(self) -> bool:
        return NoneType in _union_members(self.info.annotation)

    @cached_property
    def numeric(self) -> bool:
        """A plain float field: checked with numpy, not value by value."""
        return set(_union_members(self.info.annotation)) - {NoneType} == {float}

    @cached_property
    def bounds(self) -> list[tuple[str, float]]:
        """The field's numeric bounds as (numpy comparison that must hold, value)."""
        found = []
        for constraint in self.info.metadata:
            for kind, attribute in (
                ("greater_equal", "ge"),
                ("less_equal", "le"),
                ("greater", "gt"),
                ("less", "lt"),
            ):
                bound = getattr(constraint, attribute, None)
                if isinstance(constraint, annotated_types.BaseMetadata) and bound is not None:
                    found.append((kind, float(bound)))
        return found

    def problem(self, row: int, value: object) -> FieldProblem | None:
        """pydantic's verdict on one value."""
        try:
            self.item.validate_python(value)
        except ValidationError as exc:
            return FieldProblem(row, self.name, exc.errors(include_url=False)[0]["msg"])
        return None


RULES: Final = {name: _FieldRule(name, info) for name, info in LoanApplication.model_fields.items()}


def validate_columns(columns: Mapping[str, Column], rows: int) -> ValidatedColumns:
    """Validate `rows` applications given as columns (a list of JSON-like values,
    a numpy array or a CodedColumn per field; absent optional fields count as
    missing). Raises ColumnsValidationError naming each refused (row, field)."""
    checked = check_columns(columns, rows)
    if checked.total:
        raise ColumnsValidationError(checked.problems, checked.total)
    return checked.columns


@dataclass(frozen=True)
class CheckedColumns:
    """Every row's verdict: `columns` holds all rows (a refused row's values are
    not meaningful), `refused` marks the refused rows, `problems` lists the first
    problems in row order and `total` counts them all."""

    columns: ValidatedColumns
    refused: np.ndarray
    problems: list[FieldProblem]
    total: int

    def valid(self) -> ValidatedColumns:
        """The rows no rule refused, in order."""
        return self.columns.take(np.flatnonzero(~self.refused))


def check_columns(columns: Mapping[str, Column], rows: int) -> CheckedColumns:
    """As validate_columns, but returns the verdict on each row instead of raising,
    for bulk paths that score the valid rows and report the others."""
    problems: list[FieldProblem] = []
    total = 0
    refused = np.zeros(rows, dtype=bool)
    values: dict[str, np.ndarray] = {}
    for name in columns:
        if name not in RULES:
            # As pydantic with extra="forbid": every row names the unknown field.
            total += rows
            refused[:] = True
            problems += [FieldProblem(r, name, EXTRA_MESSAGE) for r in range(min(rows, 21))]
    for name, rule in RULES.items():
        deadline.check()
        column = columns.get(name)
        if column is None:
            if rule.info.is_required():
                total += rows
                refused[:] = True
                problems += [FieldProblem(r, name, MISSING_MESSAGE) for r in range(min(rows, 21))]
            values[name] = _all_missing(rule, rows)
            continue
        if len(column) != rows:
            raise ValueError(f"column {name} has {len(column)} values, expected {rows}")
        if isinstance(column, CodedColumn):
            checked, refused_here = _coded(rule, column)
        elif rule.numeric:
            checked, refused_here = _numeric(rule, column)
        else:
            checked, refused_here = _by_value(rule, column)
        values[name] = checked
        total += len(refused_here)
        refused[[p.row for p in refused_here]] = True
        problems += refused_here[: MAX_REPORTED_PROBLEMS + 1]
    if total:
        order = {
            name: i for i, name in enumerate([*RULES, *(c for c in columns if c not in RULES)])
        }
        problems.sort(key=lambda p: (p.row, order[p.field]))
    return CheckedColumns(ValidatedColumns(rows, values), refused, problems, total)


def _numeric(rule: _FieldRule, column: Values) -> tuple[np.ndarray, list[FieldProblem]]:
    """Bounds, finiteness and nullability with numpy; pydantic only for the refused."""
    array, missing, odd = _as_float(column)
    refused = odd.copy()
    with np.errstate(invalid="ignore"):
        for kind, bound in rule.bounds:
            refused |= ~getattr(np, kind)(array, bound) & ~missing
    refused |= ~np.isfinite(array) & ~missing
    if not rule.nullable:
        refused |= missing
    cells = column.tolist() if isinstance(column, np.ndarray) else column
    problems = [
        problem
        for row in np.flatnonzero(refused).tolist()
        if (problem := rule.problem(row, None if missing[row] else cells[row])) is not None
    ]
    # Every refusal here must be pydantic's too; one it accepts is a bug in this module.
    if len(problems) != int(refused.sum()):
        raise AssertionError(f"{rule.name}: the vectorised check refused a value pydantic accepts")
    return array, problems


def _as_float(column: Values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, missing mask, mask of values of a type pydantic's strict
    float refuses). In a float numpy array NaN means missing, as in a frame; in a
    list only None does, and a NaN is a (refused) value."""
    if isinstance(column, np.ndarray) and column.dtype.kind in "fiu":
        array = column.astype(np.float64, copy=False)
        return array, np.isnan(array), np.zeros(len(array), dtype=bool)
    cells = column.tolist() if isinstance(column, np.ndarray) else list(column)
    # bool is an int to Python but not a number to strict pydantic.
    if set(map(type, cells)) <= {float, int, NoneType}:
        array = _floats(cells)  # None becomes NaN
        missing = np.zeros(len(cells), dtype=bool)
        gaps = np.flatnonzero(np.isnan(array))
        missing[gaps] = [cells[i] is None for i in gaps.tolist()]
        return array, missing, np.zeros(len(cells), dtype=bool)
    numeric = np.fromiter((type(v) in (float, int) for v in cells), dtype=bool, count=len(cells))
    missing = np.fromiter((v is None for v in cells), dtype=bool, count=len(cells))
    return (
        _floats([v if ok else None for v, ok in zip(cells, numeric, strict=True)]),
        missing,
        (~numeric & ~missing),
    )


def _floats(cells: list[Any]) -> np.ndarray:
    """float64 of ints, floats and None (as NaN); an int beyond float range becomes
    infinite, and is refused as such."""
    try:
        return np.array(cells, dtype=np.float64)
    except OverflowError:
        return np.array([_float_or_inf(v) for v in cells], dtype=np.float64)


def _float_or_inf(value: Any) -> float:
    if value is None:
        return np.nan
    try:
        return float(value)
    except OverflowError:
        return np.inf if value > 0 else -np.inf


def _coded(rule: _FieldRule, column: CodedColumn) -> tuple[np.ndarray, list[FieldProblem]]:
    """A coded column: each distinct value checked once, by the column's own rule."""
    distinct = [*column.distinct, None]  # code -1: missing
    if rule.numeric:
        kept, refused = _numeric(rule, distinct)
    else:
        kept, refused = _by_value(rule, distinct)
    problems = []
    if refused:
        messages = {p.row: p.message for p in refused}
        codes = np.where(column.codes < 0, len(distinct) - 1, column.codes)
        for row in np.flatnonzero(np.isin(codes, list(messages))).tolist():
            problems.append(FieldProblem(row, rule.name, messages[int(codes[row])]))
    return kept[column.codes], problems


def _by_value(rule: _FieldRule, column: Values) -> tuple[np.ndarray, list[FieldProblem]]:
    """pydantic once per distinct value, in one call over the distinct values."""
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        # Floats of one type (NaN: missing, as in any float array here): no
        # merging of look-alike values of different types is possible.
        float_codes, uniques = pd.factorize(column, use_na_sentinel=True)
        return _coded(rule, CodedColumn(float_codes, uniques.tolist()))
    values = column.tolist() if isinstance(column, np.ndarray) else list(column)
    types = set(map(type, values)) - {NoneType}
    # Hashing merges True with 1 and 1 with 1.0, and factorize merges NaN with None;
    # pydantic tells them apart, so mixed columns (and lists, dicts) go value by value.
    if len(types) > 1 or not types <= {str, int, bool}:
        return _value_by_value(rule, values)
    cells = np.fromiter(values, dtype=object, count=len(values))
    codes, uniques = pd.factorize(cells.astype(object, copy=False), use_na_sentinel=True)
    distinct = [*uniques.tolist(), None]
    codes[codes < 0] = len(distinct) - 1  # missing cells: the None at the end
    kept = np.empty(len(distinct), dtype=object)
    messages: dict[int, str] = {}
    try:
        kept[:] = rule.items.validate_python(distinct)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            messages.setdefault(int(error["loc"][0]), error["msg"])
        for index, value in enumerate(deadline.checked(distinct)):
            if index not in messages:
                kept[index] = rule.item.validate_python(value)
    bad = np.flatnonzero(np.isin(codes, list(messages))).tolist()
    problems = [FieldProblem(row, rule.name, messages[int(codes[row])]) for row in bad]
    return kept[codes], problems


def _value_by_value(rule: _FieldRule, cells: list[object]) -> tuple[np.ndarray, list[FieldProblem]]:
    """pydantic on each distinct (type, value) pair: the slow, exact path."""
    verdicts: dict[tuple[type, object], tuple[object, str | None]] = {}
    out = np.empty(len(cells), dtype=object)
    problems = []
    for row, value in enumerate(deadline.checked(cells)):
        try:
            key = (type(value), value)
            verdict = verdicts.get(key)
        except TypeError:  # unhashable (a list or an object): judged alone
            key, verdict = None, None
        if verdict is None:
            verdict = _verdict(rule, value)
            if key is not None:
                verdicts[key] = verdict
        out[row], message = verdict
        if message is not None:
            problems.append(FieldProblem(row, rule.name, message))
    return out, problems


def _verdict(rule: _FieldRule, value: object) -> tuple[object, str | None]:
    try:
        return rule.item.validate_python(value), None
    except ValidationError as exc:
        return None, exc.errors(include_url=False)[0]["msg"]


def _all_missing(rule: _FieldRule, rows: int) -> np.ndarray:
    if rule.numeric:
        return np.full(rows, np.nan)
    return np.full(rows, rule.info.default, dtype=object)


def _union_members(annotation: object) -> tuple[object, ...]:
    if get_origin(annotation) in (Union, UnionType):
        return get_args(annotation)
    return (annotation,)


def _python_values(column: np.ndarray) -> list[object]:
    if column.dtype.kind == "f":
        return [None if v != v else v for v in column.tolist()]
    return column.tolist()
