"""KServe's model server with the fitted pipeline, the way KServe's sklearn server
serves a model: a `kserve.Model` that loads it and answers `predict_proba` on
what `get_predict_input` makes of the request (a DataFrame for a V2 request with
the pandas content type, or for V1 `instances` of records).

Runs in KServe's own venv (bench/kserve_peer.py builds it), not in the project's:

    python bench/kserve_model.py --model_name loan_approval --model_path model.joblib \\
        --http_port PORT --workers 2 --enable_grpc false
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
from kserve import model_server
from kserve.utils.utils import get_predict_input, get_predict_response


class PipelineModel(kserve.Model):  # type: ignore[misc]
    """The pipeline behind KServe's V1 and V2 endpoints, as its sklearn server."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict_proba(instances), self.name)


def listen_on_loopback() -> None:
    """KServe's REST server binds 0.0.0.0 with no setting to change it; the bench
    serves on 127.0.0.1 only."""
    import uvicorn

    init = uvicorn.Config.__init__

    def loopback_init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("host") == "0.0.0.0":
            kwargs["host"] = "127.0.0.1"
        init(self, *args, **kwargs)

    uvicorn.Config.__init__ = loopback_init  # type: ignore[method-assign]


def main() -> None:
    listen_on_loopback()
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    server = kserve.ModelServer()
    server.start([PipelineModel(args.model_name, args.model_path)])


if __name__ == "__main__":
    main()
