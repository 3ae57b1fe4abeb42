"""In-process cost of scoring: what the service's `predict` does, without HTTP.

Run in a subprocess of its own (`python -m bench.inprocess HOME TAG ROWS_JSON`),
so the model is loaded the way a worker loads it and the harness process's own
imports and threads do not colour the figures. Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

SIZES: Final = (1, 256, 10_000)
# Repeats per size: more for the cheap calls, so each size takes well under a second.
REPEATS: Final = {1: 200, 256: 50, 10_000: 7}


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # first call pays one-off costs (imports, allocations)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def measure(tag: str, rows: list[dict]) -> dict[str, dict[str, float]]:
    """Median milliseconds per call, per number of rows, for: the pipeline on a
    ready frame; the frame built from validated applications and the pipeline
    (the service before the fast path); the fast path the service uses; and the
    whole decision, reasons of the rejections included (Scorer.decide)."""
    from loan_preprocessing.decide import Scorer
    from loan_preprocessing.model.features import applications_predictor, to_feature_frame
    from loan_preprocessing.model.store import get_model, load_pipeline
    from loan_preprocessing.schema import LoanApplication

    pipeline = load_pipeline(get_model(tag))
    predict = applications_predictor(pipeline)  # prepared once, as a worker does
    scorer = Scorer.from_model(get_model(tag))
    applications = [LoanApplication.model_validate(r) for r in rows]
    results: dict[str, dict[str, float]] = {}
    for size in SIZES:
        chosen = [applications[i % len(applications)] for i in range(size)]
        frame = to_feature_frame([a.model_dump() for a in chosen])
        results[str(size)] = {
            "pipeline_predict_proba_ms": median_ms(
                partial(pipeline.predict_proba, frame), REPEATS[size]
            ),
            "frame_and_predict_proba_ms": median_ms(
                partial(_frame_and_predict_proba, pipeline, chosen), REPEATS[size]
            ),
            "fast_path_ms": median_ms(partial(predict, chosen), REPEATS[size]),
            "decide_ms": median_ms(partial(scorer.decide, chosen), REPEATS[size]),
        }
    return results


def _frame_and_predict_proba(pipeline: Any, applications: list[Any]) -> object:
    """The classic path: a DataFrame per call, then the pipeline."""
    from loan_preprocessing.model.features import to_feature_frame

    return pipeline.predict_proba(to_feature_frame([a.model_dump() for a in applications]))


def main(argv: list[str]) -> int:
    tag, rows_path = argv
    rows = json.loads(Path(rows_path).read_text())
    print(json.dumps(measure(tag, rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
