"""Hosts' work on workers per site: Celery on RabbitMQ (``raorch worker``, ``raorch rollout
--broker``). Needs the ``workers`` extra (``pip install 'raorch[workers]'``).

One Celery task, ``raorch.host``: its argument is a host's ``WorkContext`` as JSON (no password:
references only), its result the ``WorkResult`` as JSON. One queue per site,
``raorch.site.<name>``: the controller publishes each host's task to its site's queue, and the
workers of that site (``raorch worker --site NAME``) consume it.

Settings, and why (measured on this project's machine, RabbitMQ and Redis, Celery 5):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged when it ends, not
  when a worker takes it. When a worker dies (SIGKILL), its connection closes and RabbitMQ hands
  its unacknowledged tasks to another consumer of the queue at once (AMQP 0-9-1: unacknowledged
  deliveries are requeued when their channel closes; RabbitMQ documentation, "Consumer
  Acknowledgements and Publisher Confirms"). Redis instead keeps such a task invisible for its
  ``visibility_timeout`` (an hour by default), and hands a task that runs longer than that to a
  second worker while the first still runs: a host applied twice at once. raorch offers
  RabbitMQ only (``amqp://``, ``amqps://``).
- ``worker_prefetch_multiplier = 1``: a worker reserves no more tasks than it runs (its
  concurrency), so a queued host goes to the first worker free, and a killed worker had only
  the hosts it was running.
- The ``threads`` pool: pypsrp is synchronous I/O, and one process means a SIGKILL ends every
  host's work of the worker with its connection (a prefork child could outlive its parent and
  go on writing while the redelivered task runs elsewhere).
- ``task_track_started``: the worker reports when it takes a task, so the controller knows a
  queued host from a running one (what it can give back when a gate fails, and why a host had
  no result by its deadline).
- Result backend ``rpc://``: results come back as messages on the controller's own reply
  queue, on the same broker; nothing else to run. The journal holds what must outlive the
  controller (snapshots, committed by the workers; outcomes, recorded by the controller from
  these results); a result the controller was not there to read is not needed: rerunning the
  command runs that host again, from the journal's original snapshot, and finds it done.
- ``expires``: each task expires at its host's deadline; a worker that receives it later (the
  site had no worker until then) drops it (Celery marks it revoked) instead of running a host
  the controller has already failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from raorch.engine.dispatch import Withdrawn, WorkContext, WorkResult
from raorch.engine.workers import WorkerSide
from raorch.models.errors import RaorchError, RefusedError

TASK = "raorch.host"
QUEUE_PREFIX = "raorch.site."
SCHEMES = ("amqp", "amqps", "pyamqp")
CHECK_INTERVAL = 1.0  # seconds between two looks at the sites' queues
DEFAULT_NO_WORKER_AFTER = 30.0  # seconds a site may have no worker before it is shown so

log = logging.getLogger("raorch.broker")


class BrokerError(RaorchError):
    """The broker cannot be used: a wrong URL, unreachable, refused credentials. The message
    never holds the URL's password."""

    exit_code = RefusedError.exit_code


def require_celery() -> None:
    """Celery is imported when workers are used (the ``workers`` extra; ~0.15 s to import):
    a run without ``--broker`` never loads it."""
    try:
        import celery  # noqa: F401
    except ImportError:
        raise BrokerError(
            "workers need Celery, which is not installed",
            "pip install 'raorch[workers]'",
        ) from None


def safe_url(url: str) -> str:
    """The broker URL for messages: its password masked."""
    require_celery()
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def check_url(url: str) -> None:
    """Only RabbitMQ: its acknowledgements are what a killed worker's hosts need (above)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        shown = scheme or url.partition(":")[0] or "(none)"
        raise BrokerError(
            f"the broker must be RabbitMQ (amqp:// or amqps://), not {shown!r}",
            "e.g. --broker amqp://raorch:PASSWORD@rabbit.example:5672/raorch; Redis hands a "
            "task that outlives its visibility timeout to a second worker while the first "
            "still runs (a host applied twice at once)",
        )


def site_queue_name(site: str) -> str:
    return QUEUE_PREFIX + site


def site_queue(site: str) -> Any:
    """The site's queue, declared the same way by the controller and the workers (durable: it
    and its tasks outlive a broker restart)."""
    from kombu import Exchange, Queue

    name = site_queue_name(site)
    return Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True)


def celery_app(url: str, worker: WorkerSide | None = None) -> Any:
    """The Celery app: the controller's (publishes, reads results) or, with ``worker``, a
    worker's (runs ``raorch.host`` with it)."""
    require_celery()
    check_url(url)
    from celery import Celery

    app = Celery("raorch", broker=url, backend=_reply_backend(), set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=3,
        broker_connection_timeout=5,
        # A publish the broker cannot take is retried briefly, then the host fails.
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2},
        # RabbitMQ closes the channel of a delivery not acknowledged within consumer_timeout
        # (30 minutes by default): a host's deadline must stay below it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        result_expires=None,
    )
    if worker is not None:

        @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
        def host(task: Any, context: str) -> str:
            request = task.request
            return worker.run(
                context,
                expires_at=_timestamp(request.expires),
                redelivered=bool((request.delivery_info or {}).get("redelivered")),
            )

    return app


def _reply_backend() -> type:
    """Celery's ``rpc://`` backend, declaring the controller's reply queue only while no
    consumer holds it.

    ``RPCBackend.on_task_call`` (celery/backends/rpc.py) declares the reply queue before every
    publish, and kombu never caches the declaration of an auto-delete queue
    (``Queue.can_cache_declaration``, kombu/entity.py): a round trip to RabbitMQ per host,
    about a tenth of the controller's CPU per host (profiled at 1,000 hosts). The queue
    cannot be missing while the controller's result consumer is on it: AMQP deletes an
    auto-delete queue only when its last consumer goes, and Celery's consumer declares it
    again when it reconnects (``ResultConsumer._reconnect``), in the thread that also
    publishes. So: declared before the first task (no consumer yet), then no more."""
    from celery.backends.rpc import RPCBackend

    class ReplyQueueBackend(RPCBackend):  # type: ignore[misc]
        def on_task_call(self, producer: Any, task_id: str) -> None:
            if self.result_consumer._consumer is None:
                super().on_task_call(producer, task_id)

    return ReplyQueueBackend


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    try:
        return datetime.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def connect(app: Any, url: str) -> Any:
    """A connection to the broker, or a ``BrokerError`` that says why (never the password)."""
    conn = app.connection_for_write()
    try:
        conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        conn.release()
        raise BrokerError(
            f"cannot reach the broker {safe_url(url)}: {_why(exc)}",
            "check that RabbitMQ runs there, the address and port, the account and its "
            "password (in the URL), and the virtual host",
        ) from None
    return conn


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0].rstrip(". ")


# ---------------------------------------------------------------- the controller's side


@dataclass(frozen=True, slots=True)
class SiteStatus:
    """What the broker says of a site's queue (``SiteChecked`` for the views)."""

    site: str
    workers: int  # consumers of the queue
    queued: int  # tasks waiting, not yet delivered to a worker
    no_worker_since: float | None  # set once it had no worker for ``no_worker_after`` s


@dataclass(slots=True)
class _Task:
    id: str
    context: WorkContext
    future: asyncio.Future[WorkResult]
    loop: asyncio.AbstractEventLoop
    site: str
    started: bool = False
    withdrawing: bool = False  # revoked; given back once no worker can be running it


@dataclass(slots=True)
class _Site:
    workers: int = -1  # not looked at yet
    queued: int = 0
    without_since: float | None = None  # when it was first seen without a worker
    shown: SiteStatus | None = None
    shown_at: float = 0.0


@dataclass(slots=True)
class _Pending:
    tasks: dict[str, _Task] = field(default_factory=dict)


class CeleryDispatcher:
    """``Dispatcher`` to workers per site, through RabbitMQ: each host's context published to
    its site's queue, its result read from the controller's reply queue.

    Every Celery call is made from one thread of its own (kombu's connections are not
    thread-safe); the event loop talks to it through a queue, and gets results back as its
    futures' results. ``withdraw`` revokes the tasks no worker was seen taking, and gives each
    back once no worker can be running it (``_withdraw``); ``late`` says why a host had no
    result by its deadline (its site had no worker, or its workers were busy). ``on_site`` is
    called (in the event loop of the tasks) when a site's figures change, at most once a
    second per site.
    """

    def __init__(
        self,
        url: str,
        *,
        sites: Iterable[str] = (),
        no_worker_after: float = DEFAULT_NO_WORKER_AFTER,
        on_site: Callable[[SiteStatus], None] | None = None,
    ) -> None:
        self.url = url
        self.app = celery_app(url)
        self.no_worker_after = no_worker_after
        self.on_site = on_site
        self._conn = connect(self.app, url)  # raises BrokerError now, before any host
        self._requests: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending = _Pending()
        self._sites: dict[str, _Site] = {s: _Site() for s in sites}
        self._lock = threading.Lock()  # _sites' figures, read by late() from the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = threading.Event()
        # host -> its task of this run (the event loop's own: ``late`` reads it after the
        # controller gave up on the host, when the broker's thread has forgotten the task)
        self._task_of: dict[str, _Task] = {}
        self._queues: dict[str, Any] = {}  # site -> its queue, declared (``_declare``)
        # One producer for the dispatcher's thread, on its own connection: Celery would take
        # one from its pool and give it back for every task.
        self._producer = self.app.amqp.Producer(self._conn, auto_declare=False)
        for site in self._sites:
            self._declare(site)
        self._thread = threading.Thread(target=self._run, name="raorch-broker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the Dispatcher protocol

    async def submit(self, context: WorkContext) -> WorkResult:
        if self._closed.is_set():
            raise RuntimeError("the broker dispatcher is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        task = _Task(uuid.uuid4().hex, context, loop.create_future(), loop, context.target.site)
        self._task_of[context.target.name] = task
        self._requests.put(("publish", task))
        try:
            result = await task.future
            del self._task_of[context.target.name]
            return result
        except asyncio.CancelledError:
            # The controller gave up on the host (its deadline, an abort): a queued task is
            # revoked (it also expires at the deadline); a started one sees its deadline
            # where it runs (the worker's cancel flag) and ends.
            self._requests.put(("forget", task.id))
            raise

    def withdraw(self) -> None:
        self._requests.put(("withdraw", None))

    def late(self, context: WorkContext) -> str | None:
        site = context.target.site
        with self._lock:
            state = self._sites.get(site)
            workers = -1 if state is None else state.workers
            since = None if state is None else state.without_since
        task = self._task_of.pop(context.target.name, None)
        if task is not None and task.started:
            return None  # a worker had it: the host itself was slow
        if workers == 0:
            when = (
                ""
                if since is None
                else f" since {time.strftime('%H:%M:%S', time.localtime(since))}"
            )
            return (
                f"no worker of site {site} took it: the site has had no worker{when} (start "
                f"one there: raorch worker --site {site} --broker ...)"
            )
        if workers > 0:
            return (
                f"it waited in site {site}'s queue: its {workers} worker(s) were busy (start "
                "more workers, or raise --deadline)"
            )
        return None

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._requests.put(("close", None))
        self._thread.join(timeout=5)

    # ------------------------------------------------------------ the broker's thread

    def _run(self) -> None:
        consumer = self.app.backend.result_consumer
        consumer.on_message = self._on_message
        started = False
        next_check = 0.0
        while True:
            try:
                if self._serve_requests() == "close":
                    break
                if not started and self._pending.tasks:
                    # The reply queue is the app's own: one consumer for every task's result.
                    consumer.start(next(iter(self._pending.tasks)))
                    started = True
                if started:
                    with contextlib.suppress(socket.timeout, TimeoutError):
                        consumer.drain_events(timeout=0.05)
                else:
                    time.sleep(0.05)
                now = time.time()
                if now >= next_check:
                    self._check_sites(now)
                    next_check = now + CHECK_INTERVAL
            except Exception:  # the broker went away for a while: the hosts' deadlines decide
                log.exception("the broker dispatcher's loop")
                time.sleep(0.5)
        with contextlib.suppress(Exception):
            consumer.stop()
        with contextlib.suppress(Exception):
            self._conn.release()

    def _serve_requests(self) -> str | None:
        while True:
            try:
                kind, arg = self._requests.get_nowait()
            except queue.Empty:
                return None
            if kind == "close":
                for task in list(self._pending.tasks.values()):
                    self._settle(task, error=RuntimeError("the broker dispatcher was closed"))
                return "close"
            if kind == "publish":
                self._publish(arg)
            elif kind == "forget":
                forgotten = self._pending.tasks.pop(arg, None)
                if forgotten is not None and not forgotten.started:
                    self._revoke([arg])
            elif kind == "withdraw":
                self._withdraw()

    def _withdraw(self) -> None:
        """Revoke every task no worker was seen taking. Each is given back (``Withdrawn``)
        only once no worker can be running it: its worker said it dropped it (REVOKED), or
        its site has no worker at all (a task can be running only on a live consumer of its
        queue). A worker that took it before the revocation reached it runs it: its STARTED,
        then its result, come as for any host, and the host gets its outcome."""
        queued = [t for t in self._pending.tasks.values() if not t.started and not t.withdrawing]
        if not queued:
            return
        for task in queued:
            task.withdrawing = True
        self._revoke([t.id for t in queued])
        self._give_back_where_no_worker()

    def _give_back_where_no_worker(self) -> None:
        with self._lock:
            empty = {site for site, state in self._sites.items() if state.workers == 0}
        for task in list(self._pending.tasks.values()):
            if task.withdrawing and not task.started and task.site in empty:
                self._settle(task, error=Withdrawn(task.context.target.name))

    def _publish(self, task: _Task) -> None:
        context = task.context
        if task.site not in self._sites:
            self._sites[task.site] = _Site()
            self._declare(task.site)
        expires = None
        if context.deadline is not None:
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=context.deadline
            )
        self._pending.tasks[task.id] = task
        try:
            self.app.send_task(
                TASK,
                args=[context.to_json()],
                task_id=task.id,
                queue=self._queues[task.site],
                # Declared once, when the site was first seen (``_declare``): Celery would
                # otherwise bind a copy of the queue and look it up again for every task.
                declare=[],
                producer=self._producer,
                expires=expires,
                # What Celery's events and a worker's log show for the task: the host, not
                # a repr of its whole context (which Celery would build for every task).
                argsrepr=f"[{context.target.name!r}]",
                kwargsrepr="{}",
                add_to_parent=False,
            )
        except Exception as exc:
            self._settle(
                task,
                error=BrokerError(f"publishing to {safe_url(self.url)} failed: {_why(exc)}"),
            )

    def _revoke(self, ids: list[str]) -> None:
        with contextlib.suppress(Exception):
            self.app.control.revoke(ids)

    def _on_message(self, meta: dict[str, Any]) -> None:
        task = self._pending.tasks.get(str(meta.get("task_id")))
        if task is None:
            return
        status = meta.get("status")
        if status == "STARTED":
            task.started = True
        elif status == "SUCCESS":
            try:
                result = WorkResult.from_json(str(meta.get("result")))
            except Exception as exc:
                self._settle(task, error=RuntimeError(f"a worker's result was unreadable: {exc}"))
            else:
                self._settle(task, result=result)
        elif status in ("FAILURE", "REVOKED"):
            info = meta.get("result")
            what = (
                f"{info.get('exc_type')}: {info.get('exc_message')}"
                if isinstance(info, dict)
                else str(info)
            )
            if status == "REVOKED" and task.withdrawing:
                # The worker that received it dropped it: it never ran.
                self._settle(task, error=Withdrawn(task.context.target.name))
            elif status == "REVOKED":
                # Still awaited: a worker received it after its expiry (the host's deadline,
                # by the worker's clock): the deadline passed.
                self._settle(task, error=TimeoutError(f"{task.context.target.name} expired"))
            else:
                self._settle(task, error=RuntimeError(f"the worker failed: {what}"))

    def _settle(
        self,
        task: _Task,
        result: WorkResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._pending.tasks.pop(task.id, None)

        def settle() -> None:
            if task.future.done():
                return
            if error is not None:
                task.future.set_exception(error)
            else:
                task.future.set_result(result)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            task.loop.call_soon_threadsafe(settle)

    def _declare(self, site: str) -> None:
        """Declare the site's queue (exchange, queue, binding), as its workers do."""
        queue = site_queue(site)
        with self._conn.channel() as channel:
            queue.bind(channel).declare()
        self._queues[site] = queue

    def _look(self, site: str) -> tuple[int, int]:
        """The site's queue as the broker has it: (tasks waiting, consumers)."""
        with self._conn.channel() as channel:
            ok = site_queue(site).bind(channel).queue_declare(passive=True)
        return int(ok.message_count), int(ok.consumer_count)

    def _check_sites(self, now: float) -> None:
        for site in list(self._sites):
            try:
                queued, workers = self._look(site)
            except Exception:
                log.exception("looking at site %s's queue", site)
                continue
            with self._lock:
                state = self._sites[site]
                state.workers, state.queued = workers, queued
                if workers > 0:
                    state.without_since = None
                elif state.without_since is None:
                    state.without_since = now
                since = state.without_since
                gone = since is not None and now - since >= self.no_worker_after
                status = SiteStatus(site, workers, queued, since if gone else None)
                changed = status != state.shown and now - state.shown_at >= CHECK_INTERVAL
                if changed:
                    state.shown, state.shown_at = status, now
            if changed and self.on_site is not None and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self.on_site, status)
        self._give_back_where_no_worker()
