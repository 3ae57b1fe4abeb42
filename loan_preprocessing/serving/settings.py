"""Service settings, read once from the environment (names start with LOAN_)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import PositiveFloat, PositiveInt, StringConstraints, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from loan_preprocessing.model.store import MODEL_NAME
from loan_preprocessing.notices.adverse_action import NoticeSettings
from loan_preprocessing.records.location import default_store_url

ENV_PREFIX: Final = "LOAN_"
# Never shown in a message, even when refused.
SECRET_FIELDS: Final = frozenset({"api_key", "decision_store_url"})


class SettingsError(ValueError):
    """A LOAN_* variable has a value the service cannot use; the message is one line
    that names the variable."""


class ServiceSettings(BaseSettings):
    """Every knob of the running service; `LOAN_<FIELD NAME>` overrides each one."""

    # An empty variable counts as unset, as a blank line in a manifest means.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    # The model version to serve (loan_approval:<version>); the newest stored by default.
    model_tag: str = f"{MODEL_NAME}:latest"
    # A second stored version scored in shadow on every decided application (same
    # batch, after the served version's decisions; never answered to the client).
    challenger_tag: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None
    ) = None
    # Bodies above this are refused with 413 before they are read into memory.
    max_body_bytes: PositiveInt = 4_000_000
    # More applications in one request get 400.
    max_applications: PositiveInt = 5_000
    # When set, the APIs need "Authorization: Bearer <api_key>". Surrounding
    # whitespace is dropped: a Secret made from a file often ends in a newline,
    # which no client sends back.
    api_key: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = None
    # The key read from this file instead, once at start (a mounted Kubernetes
    # Secret: unlike an environment variable, a file is not inherited by every
    # child process nor readable in /proc/<pid>/environ). A named file that is
    # missing or empty stops the service: a lost Secret must not open the API.
    api_key_file: str | None = None
    # Worker processes of the server.
    workers: PositiveInt = 2
    # Keep the workers' open connections even (serving/connection_balance.py):
    # without it a client's few keep-alive connections often all land on one.
    balance_connections: bool = True
    # Threads per worker.
    threads: PositiveInt = 1
    # A request still waiting after this many seconds gets 504.
    timeout_seconds: PositiveFloat = 10.0
    # Requests in flight above this get 429 at once; divided evenly over the
    # workers (each of 2 workers refuses its 65th). A request counts once its
    # body has arrived.
    max_concurrency: PositiveInt = 128
    # A request body with no byte arriving for this long is answered 408 and
    # dropped: a stalled client must not hold a connection's memory for long.
    body_idle_seconds: PositiveFloat = 5.0
    # Adaptive batching: the most rows the model scores in one call...
    max_batch_size: PositiveInt = 1_000
    # ...and the latency it aims under; a request it cannot serve in time gets 503.
    max_latency_ms: PositiveInt = 500
    # BentoML's access log, one line per request.
    access_log: bool = False
    # OpenMP threads per worker for the model, given to workers as OMP_NUM_THREADS
    # (an OMP_NUM_THREADS already in the environment wins). One: the workers
    # already share the cores, and the booster opens a parallel region per tree,
    # whose synchronisation costs far more than it saves on small batches
    # (measured: 7x slower per call with 2 threads on 2 busy cores).
    model_threads: PositiveInt = 1
    # Where every decision is recorded before it is answered (records/): a
    # SQLAlchemy URL, sqlite:///<file> or postgresql://user:password@host/db.
    # Unset: a SQLite file in the project's state folder (default_store_url()).
    decision_store_url: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None
    ) = None
    # The URL read from this file instead (a mounted Kubernetes Secret: a
    # PostgreSQL URL carries a password).
    decision_store_url_file: str | None = None
    # False: decisions are not recorded, and the service says so at start. Only
    # an explicit setting turns the records off.
    decision_records: bool = True
    # SQLite only: FULL syncs every commit to disk (nothing answered is lost to a
    # power cut); NORMAL syncs at checkpoints (a process crash loses nothing, a
    # power cut may lose the last commits).
    decision_store_sqlite_sync: Literal["FULL", "NORMAL"] = "FULL"
    # How long records are kept: `make decisions-purge` deletes older ones
    # (Regulation B, 12 CFR 1002.12(b)(1): 25 months).
    retention_months: PositiveInt = 25
    # The creditor's name on the adverse-action notice (GET /decisions/{id}/notice);
    # without it, its address and the agency's name and address, notices are not served.
    notice_creditor_name: str | None = None
    # The creditor's address on the notice, its lines separated by "\n".
    notice_creditor_address: str | None = None
    # The creditor's telephone number on the notice (optional).
    notice_creditor_phone: str | None = None
    # The federal agency that administers compliance for this creditor
    # (Regulation B, Appendix A), named in the notice's ECOA paragraph.
    notice_agency_name: str | None = None
    # That agency's address, its lines separated by "\n".
    notice_agency_address: str | None = None
    # True when decisions use a consumer report (the credit history is one): the
    # notice then adds the FCRA 615(a) paragraph and names the reporting agency.
    notice_consumer_report_used: bool = False
    # The consumer reporting agency the notice names (needed with a consumer report).
    notice_reporting_agency_name: str | None = None
    # Its address, its lines separated by "\n" (needed with a consumer report).
    notice_reporting_agency_address: str | None = None
    # Its telephone number (optional).
    notice_reporting_agency_phone: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """The settings from the process environment, or from `environ` alone (a
        manifest's variables, say); SettingsError names the first bad variable."""
        try:
            if environ is None:
                settings = cls()
            else:
                settings = cls.model_validate(
                    {
                        name.removeprefix(ENV_PREFIX).lower(): value
                        for name, value in environ.items()
                        if name.startswith(ENV_PREFIX) and value != ""
                    }
                )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0])
            name = f"{ENV_PREFIX}{field.upper()}"
            shown = "<hidden>" if field in SECRET_FIELDS else repr(error["input"])
            raise SettingsError(f"{name}={shown}: {error['msg']}") from None
        if settings.decision_store_url_file is not None:
            if settings.decision_store_url is not None:
                raise SettingsError(
                    f"set {ENV_PREFIX}DECISION_STORE_URL or {ENV_PREFIX}DECISION_STORE_URL_FILE, "
                    "not both"
                )
            url = _read_secret("decision_store_url_file", settings.decision_store_url_file)
            settings = settings.model_copy(update={"decision_store_url": url})
        try:
            settings.notice_settings()
        except ValueError as exc:  # pydantic's ValidationError is one
            raise SettingsError(f"{ENV_PREFIX}NOTICE_*: {_first_line(exc)}") from None
        if settings.api_key_file is None:
            return settings
        if settings.api_key is not None:
            raise SettingsError(f"set {ENV_PREFIX}API_KEY or {ENV_PREFIX}API_KEY_FILE, not both")
        return settings.model_copy(
            update={"api_key": _read_secret("api_key_file", settings.api_key_file)}
        )

    @classmethod
    def from_env_or_exit(cls) -> ServiceSettings:
        """`from_env()`, or exit with the one-line message of SettingsError (no
        traceback: the operator needs the variable, not the code)."""
        try:
            return cls.from_env()
        except SettingsError as exc:
            raise SystemExit(f"error: {exc}") from None

    @property
    def slots_per_worker(self) -> int:
        """Requests one worker handles at once (as BentoML divided max_concurrency)."""
        return math.ceil(self.max_concurrency / self.workers)

    @property
    def store_url(self) -> str | None:
        """The decision store's URL, or None when records are turned off."""
        if not self.decision_records:
            return None
        return self.decision_store_url or default_store_url()

    def notice_settings(self) -> NoticeSettings | None:
        """The notice's sender and agencies, or None while they are not all set."""
        fields = {
            name.removeprefix("notice_"): getattr(self, name)
            for name in type(self).model_fields
            if name.startswith("notice_")
        }
        required = ("creditor_name", "creditor_address", "agency_name", "agency_address")
        if not all(fields[name] for name in required):
            return None
        # A one-line variable spells an address's line breaks as "\n".
        unescaped = {
            k: v.replace("\\n", "\n") if isinstance(v, str) else v for k, v in fields.items()
        }
        return NoticeSettings.model_validate(unescaped)

    @classmethod
    def variable_names(cls) -> frozenset[str]:
        """Every LOAN_* variable the service reads."""
        return frozenset(ENV_PREFIX + name.upper() for name in cls.model_fields)


def worker_envs(settings: ServiceSettings) -> list[dict[str, str]]:
    """Environment variables for every worker, in @bentoml.service(envs=...) form."""
    return [{"name": "OMP_NUM_THREADS", "value": str(settings.model_threads)}]


def _first_line(exc: Exception) -> str:
    errors = exc.errors() if isinstance(exc, ValidationError) else None
    return str(errors[0]["msg"]) if errors else str(exc).splitlines()[0]


def _read_secret(field: str, path: str) -> str:
    """The value in `path`, without the newline a Secret made from a file often has."""
    variable = f"{ENV_PREFIX}{field.upper()}={path!r}"
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read it ({exc.strerror})") from None
    if not key:
        raise SettingsError(f"{variable}: the file is empty")
    return key
