"""The service's recording seam: every decision is committed to the decision store
(records/) before its answer leaves, and marked delivered once it has left.

How a request and its records find each other: `DecisionDelivery`, an ASGI
middleware on the decision routes, opens a `RequestTicket` for each request and
puts it in a context variable. /predict's request model stamps the ticket on each
application it parses (BentoML then batches applications of many requests into
one call, where no request context exists); V2 and CSV handlers read it directly.
The recorder commits in group commits and notes each ticket's answer id. A
/predict batch does not wait for its commit: it queues its records and returns,
so BentoML's batcher (one batch at a time per worker) goes on deciding while
the disk syncs, and batches that queue meanwhile share the next transaction.
Each response waits for its own request's commits before its first byte. When
the response's last byte has been handed to the connection, the middleware marks
that answer delivered and only then counts its decisions in
`loan_decisions_total`; a 504, a client gone or a killed worker leave it
undelivered. A store that cannot commit fails the commit: each of its requests
gets 503 with the reason and Retry-After, never a decision without its record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from loan_preprocessing.decide import ColumnDecisions, Unscored
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.records.challenger import record_challenger
from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.rows import column_columns, object_columns
from loan_preprocessing.records.store import (
    Answer,
    DecisionStore,
    StoredAnswer,
    StoreUnavailable,
    new_ids,
)
from loan_preprocessing.records.tables import MAX_IDEMPOTENCY_KEY_LENGTH
from loan_preprocessing.schema import Decision, LoanApplication
from loan_preprocessing.serving.metrics import DomainMetrics
from loan_preprocessing.serving.middleware import (
    MODEL_TAG_HEADER,
    Receive,
    Scope,
    Send,
    header,
    send_json,
)
from loan_preprocessing.serving.settings import ServiceSettings
from loan_preprocessing.serving.shadow import ShadowDecisions

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
# Stripe's name for the mark of a replayed answer; the IETF draft names none.
REPLAY_HEADER: Final = "Idempotent-Replayed"
# What a 503 asks the client to wait before trying again.
RETRY_AFTER_SECONDS: Final = 2
# Delivery marks waiting for the store (while it is down) beyond this are dropped
# with a log line: memory stays bounded however long an outage lasts.
MAX_PENDING_MARKS: Final = 100_000
# How long a delivery mark waits for a commit of records to carry it before the
# marks' own thread commits it: under load a commit comes sooner, so marks cost
# no sync of their own; an idle server's marks are written this much later.
MARKS_LINGER_SECONDS: Final = 0.05
# Challenger batches waiting for the store beyond this are not recorded (and are
# counted as failures): the shadow never holds the champion's memory or time.
MAX_PENDING_CHALLENGER_BATCHES: Final = 64
# Directions of a shadow decision unlike the served one (served->challenger).
FLIP_DIRECTIONS: Final = ("N->Y", "Y->N")

T = TypeVar("T")
# Renders each row of a columnar answer as recorded, from the decisions and ids.
RowAnswers = Callable[[ColumnDecisions, list[str]], list[str]]


@dataclass(eq=False)
class RequestTicket:
    """One request on a decision route, from its arrival to its last byte."""

    route: str
    idempotency_key: str | None = None
    request_sha256: str | None = None
    # BentoML splits a request larger than the batch size over several batches:
    # each part is an answers row of its own, all under this request id.
    request_id: str = field(default_factory=lambda: new_ids(1)[0])
    # Rows given a position so far (the next part's first position).
    positioned_rows: int = 0
    # The commits of the request's parts (/predict's queued group commits): its
    # answer is sent once they are done.
    commits: list[asyncio.Future[None]] = field(default_factory=list)
    # Filled in by the recorder as the request's parts are committed.
    answer_ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    # Set when its records could not be committed: the request gets a 503.
    store_error: str | None = None
    # Set when its Idempotency-Key was recorded by a concurrent request: a 409.
    key_taken: bool = False


_TICKET: Final[contextvars.ContextVar[RequestTicket | None]] = contextvars.ContextVar(
    "decision_ticket", default=None
)


def current_ticket() -> RequestTicket | None:
    """The ticket of the request being handled (None outside a decision route)."""
    return _TICKET.get()


@dataclass
class _QueuedCommit:
    """One /predict batch's records, waiting for the next group commit."""

    answers: list[Answer]
    tickets: list[RequestTicket]
    done: concurrent.futures.Future[None]


def _retrieve_failure(commit: asyncio.Future[None]) -> None:
    # The failure reaches the client through its ticket (a 503); taking it here
    # keeps asyncio from logging it as never retrieved when no answer awaited it.
    if not commit.cancelled():
        commit.exception()


def recorded_request_model(base: type[BaseModel]) -> type[BaseModel]:
    """/predict's request model, which gives each application it parses the
    current request's ticket (BentoML parses in the request's context)."""

    class RecordedPredictRequest(base):  # type: ignore[valid-type,misc]
        @classmethod
        def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
            parsed = super().model_validate_json(json_data, **kwargs)
            ticket = _TICKET.get()
            if ticket is not None:
                for application in parsed.applications:
                    application._request = ticket
            return parsed

    RecordedPredictRequest.__name__ = base.__name__
    RecordedPredictRequest.__qualname__ = base.__qualname__
    return RecordedPredictRequest


def prepare_store(settings: ServiceSettings) -> None:
    """At start, in the main process: say where decisions are recorded (or that
    they are not), create the schema of an empty store, and stop the server with
    one line if the store cannot be opened or has an older schema."""
    url = settings.store_url
    if url is None:
        logger.warning(
            "decision records are OFF (LOAN_DECISION_RECORDS=false): decisions are not recorded"
        )
        print("decision records are OFF: decisions are not recorded", file=sys.stderr)
        return
    store = DecisionStore(url, sqlite_sync=settings.decision_store_sqlite_sync)
    try:
        store.prepare()
    except (StoreUnavailable, SchemaOutOfDate) as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        store.close()
    print(f"decision records: {store.where}", file=sys.stderr)


class DeliveryMarks:
    """Marks answers delivered, many per transaction, and never makes a mark wait
    for the store. The store's writer carries the waiting marks in its next commit
    of records (one commit, one sync, for both); this thread commits the marks no
    commit of records took within MARKS_LINGER_SECONDS (an idle server's last
    answers), and keeps them, bounded, while the store is down."""

    def __init__(self, store: DecisionStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.waiting: list[str] = []
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="delivery-marks", daemon=True)
        self.thread.start()

    def mark(self, answer_id: str) -> None:
        with self.lock:
            self.waiting.append(answer_id)
        self.wake.set()

    def take(self) -> list[str]:
        """Every waiting mark, for a commit that writes them."""
        with self.lock:
            taken, self.waiting = self.waiting, []
        return taken

    def give_back(self, answer_ids: list[str], reason: str) -> None:
        """Marks whose commit failed: they wait again (the newest MAX_PENDING_MARKS)."""
        with self.lock:
            self.waiting[:0] = answer_ids
            dropped = len(self.waiting) - MAX_PENDING_MARKS
            if dropped > 0:
                logger.error("dropping %d delivery marks: %s", dropped, reason)
                del self.waiting[:dropped]

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(10)

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if not self.stopping:
                time.sleep(MARKS_LINGER_SECONDS)
            taken = self.take()
            if taken:
                try:
                    self.store.mark_delivered(taken)
                except StoreUnavailable as exc:
                    self.give_back(taken, str(exc))
                    if not self.stopping:
                        # While the store is down, try again every second.
                        time.sleep(1.0)
                        self.wake.set()
            if self.stopping:
                return


class DecisionRecorder:
    """What one worker keeps of each decision it gives: the domain metrics and the
    decision store (None when records are turned off: decisions are then only
    counted, as they are decided)."""

    def __init__(
        self,
        store: DecisionStore | None,
        model_tag: str,
        model_sha256: str,
        metrics: DomainMetrics,
    ) -> None:
        self.store = store
        self.model_tag = model_tag
        self.model_sha256 = model_sha256
        self.metrics = metrics
        # One thread for the store's commits and reads: the event loop never
        # waits on a disk or a database.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="decision-store")
        self.marks = DeliveryMarks(store) if store is not None else None
        # The last failure, until a commit or a probe succeeds (readiness).
        self.failure: str | None = None
        self.challenger_slots = threading.BoundedSemaphore(MAX_PENDING_CHALLENGER_BATCHES)
        # /predict batches waiting for a group commit, and whether one is on the
        # store thread's queue to take them (read and written under the lock).
        self.queued: list[_QueuedCommit] = []
        self.queued_lock = threading.Lock()
        self.group_commit_queued = False

    @classmethod
    def open(
        cls, settings: ServiceSettings, model_tag: str, model_sha256: str, metrics: DomainMetrics
    ) -> DecisionRecorder:
        """The recorder of a worker serving model `model_tag` (file sha256)."""
        url = settings.store_url
        store = (
            None
            if url is None
            else DecisionStore(url, sqlite_sync=settings.decision_store_sqlite_sync)
        )
        if store is not None:
            # Normally done once before the workers start (prepare_store); again
            # here for an app built without `bentoml serve` (Service.to_asgi()).
            store.prepare()
        return cls(store, model_tag, model_sha256, metrics)

    @property
    def recording(self) -> bool:
        return self.store is not None

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, call)

    # -- writes -----------------------------------------------------------

    async def record(
        self, applications: Sequence[LoanApplication], decisions: Sequence[Decision]
    ) -> None:
        """An adaptive batch of /predict decisions, in the applications' order: each
        request's answer queued for the next group commit with its decision_ids
        set (its ticket holds the commit to wait for), and counted once
        delivered. A row the model could not score (Unscored) is counted as such,
        and its request, answered 500, is not recorded. A commit that fails sets
        each ticket's store_error."""
        unscored = sum(isinstance(d, Unscored) for d in decisions)
        if unscored:
            self.metrics.unscored_rows.inc(unscored)
        if self.store is None:
            scored = [d for d in decisions if not isinstance(d, Unscored)]
            self.metrics.record_decisions(
                [d.Loan_Status for d in scored], [d.probability for d in scored]
            )
            return
        answers: list[Answer] = []
        tickets: list[RequestTicket] = []
        position = 0
        for ticket, group in itertools.groupby(applications, key=lambda a: a._request):
            count = len(list(group))
            requested = list(applications[position : position + count])
            decided = list(decisions[position : position + count])
            position += count
            if ticket is None or any(isinstance(d, Unscored) for d in decided):
                # Not from a request (a direct call), or answered 500: no record.
                continue
            if ticket.store_error is not None or ticket.key_taken:
                continue  # an earlier part failed: the request is not answered
            ids = new_ids(count + 1)
            for decision, decision_id in zip(decided, ids[1:], strict=True):
                decision.decision_id = decision_id
            answers.append(self._answer(ticket, ids[0], object_columns(requested, decided)))
            tickets.append(ticket)
        if answers:
            self._queue_commit(answers, tickets)

    def record_columns(
        self,
        validated: ValidatedColumns,
        decided: ColumnDecisions,
        answers: RowAnswers,
    ) -> list[str] | None:
        """Record a columnar answer (V2, CSV) in one transaction; its decision ids
        (None when records are off). `answers` gives each row's answer as JSON
        text. Raises StoreUnavailable."""
        ticket = _TICKET.get()
        if self.store is None or ticket is None:
            self.metrics.record_decisions(decided.statuses, decided.probabilities)
            return None
        ids = new_ids(len(decided) + 1)
        decision_ids = ids[1:]
        rendered = answers(decided, decision_ids)
        answer = self._answer(
            ticket, ids[0], column_columns(decision_ids, validated, decided, rendered)
        )
        self._commit_now([answer], [ticket])
        return decision_ids

    def record_challenger(
        self,
        champion: Sequence[str | None],
        decision_ids: Sequence[str | None] | None,
        shadow: ShadowDecisions,
    ) -> None:
        """The challenger's decisions on the rows the champion decided (`champion`:
        their statuses, None where it could not score; `decision_ids`: their
        records' ids, None where not recorded): counted by status and by flip
        direction, and recorded beside each recorded decision from the store's
        thread, never waited for."""
        scored = [s for s in shadow.statuses if s is not None]
        for status in set(scored):
            self.metrics.challenger_decisions.labels(loan_status=status).inc(scored.count(status))
        flips = [
            f"{served}->{challenged}"
            for served, challenged in zip(champion, shadow.statuses, strict=True)
            if served is not None and challenged is not None and served != challenged
        ]
        for direction in FLIP_DIRECTIONS:
            if direction in flips:
                self.metrics.challenger_flips.labels(direction=direction).inc(
                    flips.count(direction)
                )
        if self.store is None or decision_ids is None:
            return
        kept = [i for i, decision_id in enumerate(decision_ids) if decision_id is not None]
        if not kept:
            return
        if not self.challenger_slots.acquire(blocking=False):
            self.metrics.challenger_failures.inc(len(kept))
            return
        store = self.store

        def write() -> None:
            try:
                record_challenger(
                    store,
                    shadow.model_tag,
                    [decision_ids[i] for i in kept],  # type: ignore[misc]
                    [shadow.statuses[i] for i in kept],
                    [shadow.probabilities[i] for i in kept],
                    [shadow.reason_codes[i] for i in kept],
                )
            except StoreUnavailable as exc:
                logger.error("challenger decisions not recorded: %s", exc)
                self.metrics.challenger_failures.inc(len(kept))
            finally:
                self.challenger_slots.release()

        self.executor.submit(write)

    def _answer(self, ticket: RequestTicket, answer_id: str, columns: dict[str, Any]) -> Answer:
        first_position = ticket.positioned_rows
        ticket.positioned_rows += len(columns["decision_id"])
        return Answer(
            answer_id=answer_id,
            request_id=ticket.request_id,
            first_position=first_position,
            route=ticket.route,
            model_tag=self.model_tag,
            model_sha256=self.model_sha256,
            columns=columns,
            idempotency_key=ticket.idempotency_key,
            request_sha256=ticket.request_sha256,
        )

    def _queue_commit(self, answers: list[Answer], tickets: list[RequestTicket]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self.queued_lock:
            self.queued.append(_QueuedCommit(answers, tickets, done))
            submit = not self.group_commit_queued
            self.group_commit_queued = True
        if submit:
            # Submitted now, not from a task: the challenger's rows, submitted
            # after this batch returns, must commit after its decisions.
            self.executor.submit(self._group_commit)
        commit = asyncio.wrap_future(done)
        commit.add_done_callback(_retrieve_failure)
        for ticket in tickets:
            ticket.commits.append(commit)

    def _group_commit(self) -> None:
        """On the store thread: every batch queued so far, in one transaction."""
        with self.queued_lock:
            batches, self.queued = self.queued, []
            self.group_commit_queued = False
        answers: list[Answer] = []
        tickets: list[RequestTicket] = []
        for batch in batches:
            for answer, ticket in zip(batch.answers, batch.tickets, strict=True):
                # A request whose earlier part failed is answered 503 or 409:
                # its later parts are not recorded.
                if ticket.store_error is None and not ticket.key_taken:
                    answers.append(answer)
                    tickets.append(ticket)
        try:
            if answers:
                self._commit_now(answers, tickets)
        except StoreUnavailable as exc:
            for batch in batches:
                batch.done.set_exception(exc)
        else:
            for batch in batches:
                batch.done.set_result(None)

    def _commit_now(self, answers: list[Answer], tickets: list[RequestTicket]) -> None:
        assert self.store is not None
        marks = self.marks.take() if self.marks is not None else []
        try:
            refused = {a.answer_id for a in self.store.record(answers, delivered=marks)}
        except StoreUnavailable as exc:
            if self.marks is not None and marks:
                self.marks.give_back(marks, str(exc))
            self._failed(str(exc))
            for ticket in tickets:
                ticket.store_error = str(exc)
            raise
        self.failure = None
        for answer, ticket in zip(answers, tickets, strict=True):
            if answer.answer_id in refused:
                ticket.key_taken = True
            else:
                ticket.answer_ids.append(answer.answer_id)
                ticket.statuses.extend(answer.columns["Loan_Status"])
                ticket.probabilities.extend(answer.columns["probability"])

    def _failed(self, reason: str) -> None:
        if self.failure is None:
            logger.error("decision records: %s; answering 503 until it can commit", reason)
        self.failure = reason

    def delivered(self, ticket: RequestTicket) -> None:
        """The ticket's answer reached its client: mark it and count its decisions."""
        if not ticket.answer_ids or self.marks is None:
            return
        for answer_id in ticket.answer_ids:
            self.marks.mark(answer_id)
        self.metrics.record_decisions(ticket.statuses, ticket.probabilities)

    # -- reads and readiness ------------------------------------------------

    async def answer_for_key(self, key: str) -> StoredAnswer | None:
        return await self.read(lambda store: store.answer_for_key(key))

    async def read(self, call: Callable[[DecisionStore], T]) -> T:
        store = self.store
        assert store is not None
        return await self._run(lambda: call(store))

    async def ready(self) -> bool:
        """Whether decisions can be recorded now: after a failure, only once a
        write commits again (the store recovers without a restart)."""
        if self.failure is None or self.store is None:
            return True
        try:
            await self._run(self.store.probe)
        except StoreUnavailable as exc:
            self.failure = str(exc)
            return False
        logger.info("decision records: the store commits again")
        self.failure = None
        return True

    def close(self) -> None:
        if self.marks is not None:
            self.marks.close()
        self.executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()


def body_sha256(body: bytes, content_type: bytes | None) -> str:
    """What identifies a request's content: its body's sha256, with a multipart
    body's boundary left out (clients draw a new one for each retry)."""
    media_type, _, parameters = (content_type or b"").partition(b";")
    if media_type.strip().lower() == b"multipart/form-data":
        for parameter in parameters.split(b";"):
            name, _, value = parameter.strip().partition(b"=")
            if name.lower() == b"boundary" and value.strip(b'"'):
                body = body.replace(value.strip(b'"'), b"")
    return hashlib.sha256(body).hexdigest()


def _valid_key(raw: bytes) -> str | None:
    """The key if it is 1-255 visible ASCII characters (the header is a string)."""
    if not 0 < len(raw) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        return None
    text = raw.decode("latin-1").strip('"')
    if not text or not all(0x21 <= ord(c) <= 0x7E for c in text):
        return None
    return text


Replayer = Callable[[bytes, StoredAnswer], tuple[bytes, bytes]]


class DecisionDelivery:
    """On the decision routes: opens each request's ticket, answers a replayed
    Idempotency-Key from the store, turns a failed commit into 503 (and a key
    taken meanwhile into 409), and marks an answer delivered after its last byte.

    `replayers` maps each route to a function that renders a recorded answer as
    that route answers: (request body, stored answer) -> (media type, body).
    """

    def __init__(
        self,
        app: Any,
        replayers: dict[str, Replayer],
        recorder: Callable[[], DecisionRecorder | None],
    ) -> None:
        self.app = app
        self.replayers = replayers
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.replayers:
            return await self.app(scope, receive, send)
        recorder = self.recorder()
        if recorder is None or not recorder.recording:
            return await self.app(scope, receive, send)
        ticket = RequestTicket(route=scope["path"])
        raw_key = header(scope, IDEMPOTENCY_HEADER.lower().encode())
        if raw_key is not None:
            key = _valid_key(raw_key)
            if key is None:
                return await send_json(
                    send,
                    400,
                    {
                        "error": f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} "
                        "visible ASCII characters"
                    },
                )
            body, receive = await _read_body(receive)
            ticket.idempotency_key = key
            ticket.request_sha256 = body_sha256(body, header(scope, b"content-type"))
            try:
                stored = await recorder.answer_for_key(key)
            except StoreUnavailable as exc:
                recorder._failed(str(exc))
                return await _unavailable(send, str(exc))
            if stored is not None:
                return await self._replay(scope, send, recorder, ticket, body, stored)
        await self._answer(scope, receive, send, recorder, ticket)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        recorder: DecisionRecorder,
        ticket: RequestTicket,
    ) -> None:
        replaced = False
        listener: asyncio.Future[Any] | None = None

        async def send_after_commit(message: dict[str, Any]) -> None:
            nonlocal replaced, listener
            if replaced:
                return
            if message["type"] == "http.response.start":
                if ticket.commits:
                    await asyncio.wait(ticket.commits)
                if ticket.store_error is not None:
                    replaced = True
                    return await _unavailable(send, ticket.store_error)
                if ticket.key_taken:
                    replaced = True
                    return await send_json(
                        send,
                        409,
                        {
                            "error": f"{IDEMPOTENCY_HEADER} {ticket.idempotency_key!r} is in use "
                            "by another request; retry it to receive that request's decisions"
                        },
                    )
                # The body has been read: from here on, receive can only tell
                # that the client went away.
                listener = asyncio.ensure_future(receive())
                return await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # One turn of the loop lets the listener see a disconnect that
                # came; after the last byte, it would return at once anyway.
                await asyncio.sleep(0)
                gone = listener is not None and listener.done()
                await send(message)
                if not gone:
                    recorder.delivered(ticket)
                return
            await send(message)

        token = _TICKET.set(ticket)
        try:
            await self.app(scope, receive, send_after_commit)
        finally:
            _TICKET.reset(token)
            if listener is not None and not listener.done():
                listener.cancel()

    async def _replay(
        self,
        scope: Scope,
        send: Send,
        recorder: DecisionRecorder,
        ticket: RequestTicket,
        body: bytes,
        stored: StoredAnswer,
    ) -> None:
        key = ticket.idempotency_key
        if (
            stored.answer["request_sha256"] != ticket.request_sha256
            or stored.answer["route"] != scope["path"]
        ):
            return await send_json(
                send,
                422,
                {
                    "error": f"{IDEMPOTENCY_HEADER} {key!r} was first used with a different "
                    "request; send a new key for a new request"
                },
            )
        media_type, payload = self.replayers[scope["path"]](body, stored)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(payload)).encode()),
                    (REPLAY_HEADER.lower().encode(), b"true"),
                    (MODEL_TAG_HEADER.lower().encode(), stored.answer["model_tag"].encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        if not stored.delivered:
            # First delivery of an answer whose first attempt never arrived.
            ticket.answer_ids = [part["answer_id"] for part in stored.parts]
            ticket.statuses = [d["Loan_Status"] for d in stored.decisions]
            ticket.probabilities = [d["probability"] for d in stored.decisions]
            recorder.delivered(ticket)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (BodyReader has received it already), and a receive that
    gives it again."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return dict(await receive())
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _unavailable(send: Send, reason: str) -> None:
    await send_json(
        send,
        503,
        {"error": f"decisions cannot be recorded now, so none was made: {reason}"},
        [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
    )
