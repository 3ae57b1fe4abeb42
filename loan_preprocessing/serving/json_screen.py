"""A fast way to clear the usual JSON body of the JSON guard's checks.

guards.exact_json_problem parses the body with the standard library and a
Python hook on every object: 2.6 ms for a 1000-application body, on every
request. Here jiter (pydantic's Rust JSON parser) parses it in 0.9 ms, and a few
counts over the body and the parsed objects show that no object repeats a key
and that every key is a known one: 1.2 ms in all (one core of the 2-core bench
machine). When the screen cannot show that, the exact check runs and gives the
answer (and its message) as before: the screen only ever decides that there is
nothing to say.

Why the counts are enough, for a body jiter accepts (so valid JSON):
- Every object has its own '{' outside strings, so once the objects found number
  `body.count(b"{")`, there are no more to look for, and the scalar values (12 per
  application) are never visited.
- Every key is followed by one ':' and no other ':' lies outside a string, so the
  body's ':' are at least its keys, which are at least the distinct keys of each
  object. Equal counts leave no room for a repeated key (nor a ':' in a string:
  such a body takes the exact path).
jiter is stricter than the standard library where they differ (lone surrogates,
nesting deeper than 200, NaN with a sign), so what it accepts the standard
library accepts too, with the same keys; tests/serving/test_json_screen.py checks
this on generated bodies.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any, Final

import jiter

from loan_preprocessing import deadline

# jiter refuses integers longer than this, as Python does by default; a lower
# limit set in this process would make Python refuse what jiter accepts.
JITER_MAX_INT_DIGITS: Final = 4300


def passes(body: bytes, known_keys: frozenset[str]) -> bool:
    """True when `body` is JSON that repeats no key within an object and holds
    only `known_keys`, so exact_json_problem would find nothing; False when it
    must look (the body may still be fine). Stops at the request's deadline
    (loan_preprocessing/deadline.py) between its steps."""
    if 0 < sys.get_int_max_str_digits() < JITER_MAX_INT_DIGITS:
        return False
    try:
        # jiter's string cache has a fixed size: a client cannot grow it.
        value = jiter.from_json(body)
    except ValueError:
        return False
    deadline.check()
    objects = _objects(value, body.count(b"{"))
    if sum(map(len, objects)) != body.count(b":"):
        return False
    return known_keys.issuperset(set().union(*objects))


def _objects(value: Any, braces: int) -> list[dict[str, Any]]:
    """Every object in the parsed `value`, level by level, stopping once there
    are as many as the body has '{' (it cannot have more)."""
    objects: list[dict[str, Any]] = []
    level = [value]
    while level:
        deadline.check()
        dicts = [item for item in level if item.__class__ is dict]
        objects += dicts
        if len(objects) == braces:
            break
        lists = [] if len(dicts) == len(level) else [i for i in level if i.__class__ is list]
        level = [*chain.from_iterable(map(dict.values, dicts)), *chain.from_iterable(lists)]
    return objects
