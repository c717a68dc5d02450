"""Running one host's work with a deadline, in a worker thread, with its events.

Shared by the rollout and the rollback: pypsrp is synchronous, so each host session runs in a
thread of an executor sized to the concurrency (the default executor has only a handful of
threads on 2 cores), while the event loop keeps the deadline and emits the events. No
exception escapes a host: a bug in a host's work is that host's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from raorch.engine.cancel import Cancel
from raorch.models.events import Event, HostFinished, HostStarted, RunKind, Subscriber
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome, Reason, Stage

DEFAULT_CONCURRENCY = 32  # Invoke-Command's default ThrottleLimit
DEFAULT_DEADLINE = 300.0  # seconds per host


@dataclass(frozen=True, slots=True)
class WorkContext:
    """What the engine hands a host's work, in its worker thread."""

    rollout_id: str
    on_snapshot: Callable[[str], None]  # commit the snapshot (JSON) before the first write
    original_snapshot: str | None  # kept from an earlier, interrupted attempt
    cancel: Cancel  # set when the host's deadline passed or the run was aborted


@dataclass(frozen=True, slots=True)
class HostPlatform:
    """The Windows a host reported (its facts) and the profile raorch gave it."""

    caption: str
    os_version: str
    profile: str  # "legacy", "modern", or "" when raorch did not understand the host


@dataclass(frozen=True, slots=True)
class WorkResult:
    outcome: Outcome
    reason: Reason | None = None
    changes: int = 0
    applied: str | None = None  # the changes made, JSON, kept for rollback and `show`
    details: tuple[str, ...] = ()  # e.g. a conflict's differences, expected vs found
    platform: HostPlatform | None = None  # None when the host's facts were never read


HostWork = Callable[[Target, WorkContext], WorkResult]


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


class HostRunner:
    """Runs hosts' work in threads with a per-host deadline; emits HostStarted/HostFinished."""

    def __init__(
        self,
        rollout_id: str,
        wave: str,
        work: HostWork,
        emit: Callable[[Event], None],
        *,
        concurrency: int,
        deadline: float,
        context: Callable[[Target, Cancel], WorkContext],
        kind: RunKind = RunKind.ROLLOUT,
    ) -> None:
        self.kind = kind
        self.rollout_id = rollout_id
        self.wave = wave
        self.work = work
        self.emit = emit
        self.deadline = deadline
        self.context = context
        # Headroom over the concurrency for threads still unwinding after a host's deadline
        # passed: pypsrp cannot be interrupted, its own socket timeouts end those threads.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, concurrency) * 2, thread_name_prefix="raorch-host"
        )

    def __enter__(self) -> HostRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, target: Target) -> WorkResult:
        loop = asyncio.get_running_loop()
        cancel = Cancel()
        started = time.monotonic()
        self.emit(HostStarted(self.rollout_id, self.wave, target.name, time.time(), self.kind))
        ctx = self.context(target, cancel)
        fut = loop.run_in_executor(self._executor, _guarded, self.work, target, ctx)
        try:
            result = await asyncio.wait_for(fut, timeout=self.deadline)
        except TimeoutError:
            # No write starts after this (run_host checks it), and the host's session is
            # aborted: its sockets are shut down, so its thread ends now, not at pypsrp's
            # read timeouts.
            cancel.set()
            result = WorkResult(
                Outcome.FAILED,
                Reason(
                    Stage.DEADLINE,
                    f"no result within the host deadline of {self.deadline:g} s"
                    " (the host may hang; check WinRM on it, or raise --deadline)",
                ),
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


def _guarded(work: HostWork, target: Target, ctx: WorkContext) -> WorkResult:
    try:
        return work(target, ctx)
    except Exception as exc:  # the host boundary (nornir's rule)
        return WorkResult(
            Outcome.FAILED,
            Reason(Stage.APPLY, f"internal error in raorch: {type(exc).__name__}: {exc}"),
        )
