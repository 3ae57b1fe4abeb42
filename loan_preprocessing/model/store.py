"""Saving the pipeline to, and loading it from, the BentoML model store.

The pipeline is written with skops.io, never pickle: loading an artifact only
builds the types on `TRUSTED_TYPES`, so a tampered file cannot run code. Its
sha256 is recorded at save time and checked at load time.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Final

import bentoml
import sklearn
import skops.io
from sklearn.pipeline import Pipeline

from loan_preprocessing.model import features
from loan_preprocessing.model.features import (
    MODEL_FEATURES,
    PIPELINE_STEPS,
    feature_subset_problem,
    fields_of,
    pipeline_features,
)
from loan_preprocessing.schema import PROTECTED_ATTRIBUTES

MODEL_NAME: Final = "loan_approval"
PIPELINE_FILE: Final = "pipeline.skops"
# The metadata section that records the application fields and derived features
# the model reads (features.model_inputs()).
MODEL_INPUTS_KEY: Final = "model_inputs"

# Types skops does not trust by default but that our own pipeline contains:
# the module-level functions of the feature step, numpy dtypes and the fitted
# trees of the boosting model. Anything else in a file means it was not
# written by train.py, and loading refuses it. The feature functions are
# trusted under the path models are saved with now and under the one that
# models stored before the package layout name (LEGACY_FEATURES_MODULE).
TRUSTED_TYPES: Final = (
    "loan_preprocessing.model.features.add_loan_features",
    "loan_preprocessing.model.features.model_feature_names",
    "loan_preprocessing.features.add_loan_features",
    "loan_preprocessing.features.model_feature_names",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


class ModelLoadError(bentoml.exceptions.BentoMLException):
    """A stored model that must not be served; the message says what to do.
    A BentoMLException, so `bentoml serve` prints it as one line, not a traceback."""


def save_pipeline(
    pipeline: Pipeline,
    metadata: dict[str, Any],
    labels: dict[str, str] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> bentoml.Model:
    """Store `pipeline` as a new `loan_approval:<version>` and return it."""
    payload = skops.io.dumps(pipeline)
    metadata = {
        **metadata,
        "artifact": {
            "file": PIPELINE_FILE,
            "format": "skops",
            "sha256": hashlib.sha256(payload).hexdigest(),
        },
    }
    with bentoml.models.create(MODEL_NAME, labels=labels or {}, metadata=metadata) as model:
        Path(model.path_of(PIPELINE_FILE)).write_bytes(payload)
        for name, source in (extra_files or {}).items():
            target = Path(model.path_of(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return model


def model_metadata(model: bentoml.Model) -> dict[str, Any]:
    """What train.py recorded with the model (BentoML types it as a union of every
    JSON-like value; train.py wrote a dict of dicts)."""
    return dict(model.info.metadata)


def load_pipeline(model: bentoml.Model) -> Pipeline:
    """Load and verify a stored pipeline; raise ModelLoadError with one clear line."""
    metadata = model_metadata(model)
    artifact = metadata.get("artifact") or {}
    path = Path(model.path_of(artifact.get("file", PIPELINE_FILE)))
    if not path.is_file():
        raise ModelLoadError(f"model {model.tag} has no {PIPELINE_FILE}; retrain with train.py")
    trained_with = (metadata.get("versions") or {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"model {model.tag} was trained with scikit-learn {trained_with}, this environment "
            f"has {sklearn.__version__}; retrain it or install scikit-learn=={trained_with}"
        )
    check_model_inputs(str(model.tag), metadata)
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != artifact.get("sha256"):
        raise ModelLoadError(
            f"model {model.tag}: {path.name} sha256 {digest[:12]}... does not match the recorded "
            f"{str(artifact.get('sha256'))[:12]}...; the file was changed after training, "
            "retrain or restore it"
        )
    try:
        untrusted = set(skops.io.get_untrusted_types(data=payload)) - set(TRUSTED_TYPES)
    except Exception as exc:  # a truncated or garbled file
        raise ModelLoadError(
            f"model {model.tag}: {path.name} is not a readable skops file "
            f"({type(exc).__name__}); retrain or restore it"
        ) from exc
    if untrusted:
        raise ModelLoadError(
            f"model {model.tag}: {path.name} contains types that are not trusted: "
            f"{', '.join(sorted(untrusted))}; refusing to load it"
        )
    _alias_legacy_features_module()
    pipeline = skops.io.loads(payload, trusted=list(TRUSTED_TYPES))
    if not isinstance(pipeline, Pipeline):
        raise ModelLoadError(
            f"model {model.tag}: {path.name} holds a "
            f"{type(pipeline).__name__}, not a scikit-learn Pipeline"
        )
    recorded = metadata[MODEL_INPUTS_KEY]["features"]
    derived = (
        list(pipeline_features(pipeline)) if PIPELINE_STEPS[0] in pipeline.named_steps else None
    )
    if derived != recorded:
        raise ModelLoadError(
            f"model {model.tag}: its pipeline derives the features {derived}, its metadata "
            f"records {recorded}; retrain with train.py"
        )
    return pipeline


# Where the feature module lived before the package layout: skops files name a
# function by module path, so a model stored then refers to it by this name.
LEGACY_FEATURES_MODULE: Final = "loan_preprocessing.features"


def _alias_legacy_features_module() -> None:
    """Make the feature functions importable under their old module path, for the
    loading of models stored before the layout (no file needs rewriting, so their
    recorded sha256 still holds). Only the loader sees the old name."""
    sys.modules.setdefault(LEGACY_FEATURES_MODULE, features)


def check_model_inputs(tag: str, metadata: dict[str, Any]) -> None:
    """Refuse, with one line, a model that does not record the application fields it
    reads, that reads a protected attribute, or whose features are not ones this
    code derives (it could not score, or would score differently), or whose fields
    are not those its features are computed from."""
    recorded = metadata.get(MODEL_INPUTS_KEY)
    if not isinstance(recorded, dict):
        recorded = {}
    fields = recorded.get("fields")
    if not isinstance(fields, list):
        raise ModelLoadError(
            f"model {tag} does not record the application fields it uses (trained before "
            "they were recorded, when the model still read Married); retrain with train.py"
        )
    protected = [f"{f} ({PROTECTED_ATTRIBUTES[f]})" for f in fields if f in PROTECTED_ATTRIBUTES]
    if protected:
        raise ModelLoadError(
            f"model {tag} uses the protected attribute(s) {', '.join(protected)} as input; "
            "a credit decision must not, so it is refused: retrain with train.py"
        )
    features = recorded.get("features")
    if not isinstance(features, list) or feature_subset_problem(features):
        raise ModelLoadError(
            f"model {tag} was fitted on the features {features}, this code derives "
            f"{list(MODEL_FEATURES)} (or a subset in that order); retrain with train.py"
        )
    if fields != fields_of(features):
        raise ModelLoadError(
            f"model {tag} records the fields {fields}, its features {features} are computed "
            f"from {fields_of(features)}; retrain with train.py"
        )


def get_model(tag: str) -> bentoml.Model:
    """The stored model for `tag`, looked up locally only (never the network)."""
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ModelLoadError(_not_found_message(tag)) from exc


def stored_versions() -> list[str]:
    """The tags of the stored versions of the model, newest first."""
    try:
        models = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:  # BentoML's answer for a name with no version
        return []
    return [str(m.tag) for m in sorted(models, key=lambda m: m.creation_time, reverse=True)]


def _not_found_message(tag: str) -> str:
    """One line for a model that is not stored: the versions that are, or, for an
    empty store, where BentoML looked and how to point it at the project's."""
    stored = stored_versions()
    if stored:
        return (
            f"no model {tag!r} in the BentoML store; stored versions, newest first: "
            f"{', '.join(stored)} (set LOAN_MODEL_TAG to one of them, or unset it for the newest)"
        )
    home = os.environ.get("BENTOML_HOME")
    if home is None:
        return (
            f"no model {tag!r}: BENTOML_HOME is not set, so BentoML looked in its "
            "default store ~/bentoml, which has none; for the project's store run "
            "`export BENTOML_HOME=$PWD/.bentoml BENTOML_DO_NOT_TRACK=true` in the project "
            "folder (or train one with `make train`)"
        )
    return f"no model {tag!r}: the BentoML store {home} is empty; train one with `make train`"


class LocalBentoModel(bentoml.models.BentoModel):
    """The service's model reference, looked up in the local store only.

    BentoML's own asks BentoCloud for a model the store lacks and then fails with
    "could not be found locally and failed to fetch from remote because No cloud
    context default found", which names neither the store it looked in nor the
    fix. This one says which versions are stored, or that the store is empty and
    how to point BentoML at the project's (ModelLoadError: one line)."""

    def to_info(self, alias: str | None = None) -> Any:
        if self.stored is None:
            raise ModelLoadError(_not_found_message(str(self.tag)))
        return super().to_info(alias)

    def resolve(self, base_path: Any = None) -> Any:  # type: ignore[override]
        if self.stored is None:
            raise ModelLoadError(_not_found_message(str(self.tag)))
        return super().resolve(base_path)


def tag_to_serve(requested: str, bento: Any | None) -> str:
    """The model tag a worker must load. Inside a built Bento that is the model the
    Bento packaged, never whatever is newest in the local store, so a Bento serves
    the same model wherever it runs; `requested` may only name that same model."""
    if bento is None:
        return requested
    packaged = [str(m.tag) for m in bento.info.all_models if m.tag.name == MODEL_NAME]
    if not packaged:
        raise ModelLoadError(f"Bento {bento.tag} packages no {MODEL_NAME} model; rebuild it")
    if requested in (f"{MODEL_NAME}:latest", MODEL_NAME) or requested in packaged:
        return packaged[0] if requested not in packaged else requested
    raise ModelLoadError(
        f"LOAN_MODEL_TAG={requested} but Bento {bento.tag} packages {', '.join(packaged)}; "
        "build a Bento with that model instead (LOAN_MODEL_TAG=... bentoml build)"
    )


# The model store's own pointer file: `loan_approval:latest` names the version
# written in <store>/models/loan_approval/latest (BentoML moves it to each newly
# saved version; `make promote` moves it to the promoted one).
LATEST_POINTER: Final = "latest"


def served_by_default() -> str | None:
    """The version `loan_approval:latest` names now (what a service started
    without LOAN_MODEL_TAG serves), or None for an empty store."""
    try:
        return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None


def make_latest(tag: str) -> str:
    """Point `loan_approval:latest` at the stored version `tag`, once it loads as
    the service would load it (checksum, trusted types); its concrete tag. The
    pointer is replaced whole (a rename), so no reader sees half of it."""
    model = get_model(tag)
    if model.tag.name != MODEL_NAME:
        raise ModelLoadError(f"{model.tag} is not a version of {MODEL_NAME}")
    load_pipeline(model)
    pointer = Path(model.path).parent / LATEST_POINTER
    written = pointer.with_name(f".{LATEST_POINTER}.{os.getpid()}")
    written.write_text(str(model.tag.version))
    os.replace(written, pointer)
    return str(model.tag)
