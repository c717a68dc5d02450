"""The controller's side of running hosts: one wave's hosts in flight, with their deadlines.

Shared by the rollout and the rollback (``WaveRun``), and by plan and verify (``dispatch_all``).
Each host's work goes through a ``Dispatcher`` (engine/dispatch.py), which runs it elsewhere (a
worker thread, today) and gives its result back as a value; what stays here, in the event
loop, is everything the controller decides: how many hosts are in flight, each host's deadline
(the controller gives up on a host by cancelling its ``submit``), and the events. No exception
escapes a host: a failure of its work, or of the dispatcher, is that host's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from asyncio_pool import AioPool

from raorch.engine.dispatch import Dispatcher, Withdrawn, WorkContext, WorkResult
from raorch.models.events import Event, HostFinished, HostStarted, RunKind, Subscriber
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome, Reason, Stage

DEFAULT_CONCURRENCY = 32  # Invoke-Command's default ThrottleLimit
DEFAULT_DEADLINE = 300.0  # seconds per host

R = TypeVar("R")


class Stop:
    """Ctrl-C: the first press stops starting hosts; the second aborts. ``listeners`` are
    called at each press (the dispatcher gives back the hosts it has not started)."""

    def __init__(self) -> None:
        self.requested = False
        self.aborted = False
        self.listeners: list[Callable[[], None]] = []

    def press(self) -> None:
        if self.requested:
            self.aborted = True
        self.requested = True
        for listener in list(self.listeners):
            listener()


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Hosts in flight per site (``--site-concurrency``): ``each`` for every site, ``sites``
    for named ones (over ``each``); None: no limit but the run's concurrency."""

    each: int | None = None
    sites: Mapping[str, int] = field(default_factory=dict)

    def of(self, site: str) -> int | None:
        return self.sites.get(site, self.each)

    @property
    def any(self) -> bool:
        return self.each is not None or bool(self.sites)


class SiteQueue:
    """A batch's hosts not started yet, in order; with site limits, the first host whose site
    has a free slot comes out (a full site does not hold up the others)."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self._by_site: dict[str, deque[tuple[int, Target]]] = {}
        self._size = 0
        for position, target in enumerate(targets):
            self._by_site.setdefault(target.site, deque()).append((position, target))
            self._size += 1

    def __len__(self) -> int:
        return self._size

    def pop(self, free: Callable[[str], bool]) -> Target | None:
        """The earliest host whose site is ``free``; None when every such site is full."""
        best: deque[tuple[int, Target]] | None = None
        for site, hosts in self._by_site.items():
            if hosts and free(site) and (best is None or hosts[0][0] < best[0][0]):
                best = hosts
        if best is None:
            return None
        self._size -= 1
        return best.popleft()[1]


def fanout(subscribers: Sequence[Subscriber]) -> Callable[[Event], None]:
    def emit(event: Event) -> None:
        for sub in subscribers:
            sub(event)

    return emit


class WaveRun:
    """One wave's hosts through a dispatcher: at most ``concurrency`` in flight (and at most
    ``sites.of(site)`` of one site), each with ``deadline`` seconds, ``HostStarted`` /
    ``HostFinished`` emitted for each, its result handed to ``on_result`` (in the event loop,
    after its ``HostFinished``). A host the dispatcher withdrew (``Withdrawn``: it never
    started) gets neither ``HostFinished`` nor a result: it has no outcome.

    ``start`` waits for a free slot, then starts the host; ``free_slot`` only waits (the rollout
    decides whether to start the next host once it knows every host finished by then);
    ``next_host`` waits for a slot of the run and of the host's site; ``join`` waits for every
    host started.
    """

    def __init__(
        self,
        dispatcher: Dispatcher[WorkResult],
        emit: Callable[[Event], None],
        *,
        rollout_id: str,
        wave: str,
        kind: RunKind,
        concurrency: int,
        deadline: float,
        context: Callable[[Target], WorkContext],
        on_result: Callable[[Target, WorkResult], None],
        sites: SiteLimits | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.emit = emit
        self.rollout_id = rollout_id
        self.wave = wave
        self.kind = kind
        self.deadline = deadline
        self.context = context
        self.on_result = on_result
        self._pool = AioPool(size=max(1, concurrency))
        self._slot_freed = asyncio.Event()
        self.sites = sites or SiteLimits()
        self._site_active: Counter[str] = Counter()

    async def __aenter__(self) -> WaveRun:
        await self._pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._pool.__aexit__(exc_type, exc, tb)

    @property
    def in_flight(self) -> int:
        return int(self._pool.n_active)

    async def free_slot(self) -> None:
        while self._pool.is_full:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def site_free(self, site: str) -> bool:
        limit = self.sites.of(site)
        return limit is None or self._site_active[site] < limit

    async def next_host(self, queue: SiteQueue) -> Target:
        """Wait for a free slot of the run and for a host of ``queue`` whose site has one
        (``queue`` not empty); the host is taken out of ``queue``."""
        while True:
            await self.free_slot()
            target = queue.pop(self.site_free)
            if target is not None:
                return target
            self._slot_freed.clear()  # no await since the look: no host finished unseen
            await self._slot_freed.wait()

    async def start(self, target: Target) -> None:
        self._site_active[target.site] += 1
        try:
            await self._pool.spawn(self._host(target))
        except BaseException:
            self._site_active[target.site] -= 1
            raise

    async def join(self) -> None:
        await self._pool.join()

    async def _host(self, target: Target) -> None:
        try:
            result = await self.run(target)
            if result is not None:
                self.on_result(target, result)
        finally:
            self._site_active[target.site] -= 1
            self._slot_freed.set()

    async def run(self, target: Target) -> WorkResult | None:
        """One host: its events, its deadline; never raises. None: the dispatcher withdrew it
        before it started (no outcome, no ``HostFinished``)."""
        started = time.monotonic()
        site = target.site
        self.emit(
            HostStarted(self.rollout_id, self.wave, target.name, time.time(), self.kind, site)
        )
        context = self.context(target)
        try:
            submitted = self.dispatcher.submit(context)
            result = await asyncio.wait_for(submitted, timeout=self.deadline)
        except Withdrawn:
            return None
        except TimeoutError:
            why = self.dispatcher.late(context)
            result = WorkResult(
                Outcome.FAILED,
                Reason(
                    Stage.DEADLINE,
                    f"no result within the host deadline of {self.deadline:g} s"
                    + (
                        f": {why}"
                        if why
                        else " (the host may hang; check WinRM on it, or raise --deadline)"
                    ),
                ),
            )
        except Exception as exc:  # the host boundary (nornir's rule)
            result = WorkResult(
                Outcome.FAILED,
                Reason(Stage.APPLY, f"internal error in raorch: {type(exc).__name__}: {exc}"),
            )
        self.emit(
            HostFinished(
                self.rollout_id,
                self.wave,
                target.name,
                result.outcome,
                result.reason,
                time.monotonic() - started,
                time.time(),
                result.changes,
                result.details,
                self.kind,
                site,
            )
        )
        return result


async def dispatch_all(
    dispatcher: Dispatcher[R], contexts: Sequence[WorkContext], concurrency: int
) -> list[R]:
    """Every context's work through ``dispatcher``, ``concurrency`` at a time; the results in
    the order of ``contexts``. No deadline, no events: plan and verify, which only read."""
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(context: WorkContext) -> R:
        async with slots:
            return await dispatcher.submit(context)

    return list(await asyncio.gather(*(one(c) for c in contexts)))
