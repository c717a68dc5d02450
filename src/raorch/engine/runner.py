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
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TypeVar

from asyncio_pool import AioPool

from raorch.engine.dispatch import Dispatcher, WorkContext, WorkResult
from raorch.models.events import Event, HostFinished, HostStarted, RunKind, Subscriber
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome, Reason, Stage

DEFAULT_CONCURRENCY = 32  # Invoke-Command's default ThrottleLimit
DEFAULT_DEADLINE = 300.0  # seconds per host

R = TypeVar("R")


class Stop:
    """Ctrl-C: the first press stops starting hosts; the second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.aborted = False

    def press(self) -> None:
        if self.requested:
            self.aborted = True
        self.requested = True


def fanout(subscribers: Sequence[Subscriber]) -> Callable[[Event], None]:
    def emit(event: Event) -> None:
        for sub in subscribers:
            sub(event)

    return emit


class WaveRun:
    """One wave's hosts through a dispatcher: at most ``concurrency`` in flight, each with
    ``deadline`` seconds, ``HostStarted`` / ``HostFinished`` emitted for each, its result handed
    to ``on_result`` (in the event loop, after its ``HostFinished``).

    ``start`` waits for a free slot, then starts the host; ``free_slot`` only waits (the rollout
    decides whether to start the next host once it knows every host finished by then); ``join``
    waits for every host started.
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

    async def start(self, target: Target) -> None:
        await self._pool.spawn(self._host(target))

    async def join(self) -> None:
        await self._pool.join()

    async def _host(self, target: Target) -> None:
        try:
            self.on_result(target, await self.run(target))
        finally:
            self._slot_freed.set()

    async def run(self, target: Target) -> WorkResult:
        """One host: its events, its deadline; never raises."""
        started = time.monotonic()
        self.emit(HostStarted(self.rollout_id, self.wave, target.name, time.time(), self.kind))
        try:
            submitted = self.dispatcher.submit(self.context(target))
            result = await asyncio.wait_for(submitted, timeout=self.deadline)
        except TimeoutError:
            result = WorkResult(
                Outcome.FAILED,
                Reason(
                    Stage.DEADLINE,
                    f"no result within the host deadline of {self.deadline:g} s"
                    " (the host may hang; check WinRM on it, or raise --deadline)",
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
