"""Keeping Python's garbage collector out of the latency tail.

A worker holds about 200,000 long-lived objects after start-up (BentoML, pydantic,
scikit-learn, the model). CPython's oldest-generation collection walks all of
them, about 100 ms on this class of machine, and it runs every so often under
steady allocation; every request in flight waits for it. Freezing the start-up
heap moves those objects out of the collector's sight (they live as long as the
worker anyway), so later collections only walk what requests allocated.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once at the end of a worker's start-up."""
    gc.collect()  # what is garbage now should not be frozen
    gc.freeze()
