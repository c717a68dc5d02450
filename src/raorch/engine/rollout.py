"""The rollout engine: one wave of one rollout, hosts concurrently, the gate, resume.

asyncio drives the wave; asyncio-pool bounds the hosts in flight; pypsrp is synchronous, so each
host session runs in a thread of an executor sized to the concurrency (the default executor has
only a handful of threads on 2 cores). Every state change is an event; the journal, the JSON log
and the CLI's views subscribe. Nothing here prints.

Resume: the journal knows which hosts have a final outcome (never touched again) and which were
in flight when the controller died (run again; the operations are idempotent, and the snapshot
handed back to them is the ORIGINAL one the journal kept).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from asyncio_pool import AioPool

from raorch.engine.journal import Journal, RolloutRow
from raorch.models.errors import InputError, Location, Problem, RefusedError
from raorch.models.events import (
    Event,
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    Subscriber,
    WaveFinished,
    WaveStarted,
)
from raorch.models.inventory import ResolvedInventory, Target, WaveSpec
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState
from raorch.planning import waves as wave_math

DEFAULT_CONCURRENCY = 32  # Invoke-Command's default ThrottleLimit
FAILED_SELECTOR = "@failed"


@dataclass(frozen=True, slots=True)
class WorkContext:
    """What the engine hands a host's work, in its worker thread."""

    rollout_id: str
    on_snapshot: Callable[[str], None]  # commit the snapshot (JSON) before the first write
    original_snapshot: str | None  # kept from an earlier, interrupted attempt
    cancel: threading.Event  # set when the host's deadline passed or the run was aborted


@dataclass(frozen=True, slots=True)
class WorkResult:
    outcome: Outcome
    reason: Reason | None = None
    changes: int = 0
    applied: str | None = None  # the changes made, JSON, kept for rollback


HostWork = Callable[[Target, WorkContext], WorkResult]


@dataclass(frozen=True, slots=True)
class WaveResult:
    rollout_id: str
    wave: str
    state: WaveState
    counts: dict[Outcome, int]
    gate: wave_math.GateVerdict | None
    ran: int  # hosts this run took on
    failed_hosts: tuple[str, ...]
    changed_hosts: tuple[str, ...]


@dataclass(slots=True)
class RunOptions:
    wave: str
    limit: str | None = None
    force: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    deadline: float | None = None  # per host, seconds; None = the wave's or a default
    subscribers: list[Subscriber] = field(default_factory=list)


DEFAULT_DEADLINE = 300.0


def campaign_key(inventory: Path, playbook: Path) -> str:
    """Waves form one rollout per inventory and playbook content."""
    digest = hashlib.sha256()
    for path in (inventory, playbook):
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def matches(host: str, pattern: str | None) -> bool:
    """``--limit``: comma-separated fnmatch patterns on host names (``ws-01*,srv-*``)."""
    if not pattern:
        return True
    return any(fnmatch.fnmatchcase(host, p.strip()) for p in pattern.split(",") if p.strip())


class Stop:
    """Ctrl-C: the first press stops starting hosts; the second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.aborted = False

    def press(self) -> None:
        if self.requested:
            self.aborted = True
        self.requested = True


class Rollout:
    """One rollout (campaign) of one inventory + playbook, backed by the journal."""

    def __init__(
        self,
        journal: Journal,
        inventory: ResolvedInventory,
        playbook_path: Path,
        work: HostWork,
    ) -> None:
        self.journal = journal
        self.inventory = inventory
        self.playbook_path = playbook_path
        self.work = work
        self.row: RolloutRow = journal.open_rollout(
            campaign_key(Path(inventory.path), playbook_path),
            inventory.path,
            str(playbook_path),
            tuple(w.name for w in inventory.waves),
        )
        self.stop = Stop()

    @property
    def id(self) -> str:
        return self.row.id

    # ------------------------------------------------------------ checks before a run

    def wave_spec(self, name: str) -> WaveSpec:
        spec = self.inventory.wave(name)
        if spec is None:
            names = ", ".join(w.name for w in self.inventory.waves)
            raise InputError(
                [
                    Problem(
                        Location(self.inventory.path, path="waves"),
                        f"there is no wave named {name!r}",
                        f"the inventory's waves are: {names}",
                    )
                ]
            )
        return spec

    def check_order(self, name: str, force: bool) -> None:
        """A later wave is refused until every earlier wave finished with its gate held."""
        earlier = []
        for w in self.journal.waves(self.id):
            if w.name == name:
                break
            if not (w.state is WaveState.DONE and w.gate_held):
                earlier.append(f"{w.name} ({w.state.value})")
        if earlier and not force:
            raise RefusedError(
                f"wave {name!r} of rollout {self.id} cannot start: the earlier wave(s) "
                f"{', '.join(earlier)} have not finished with their gate held",
                "run the earlier waves first (raorch rollout --wave NAME), or pass --force "
                "to override (recorded in the journal)",
            )

    def hosts_to_run(self, spec: WaveSpec, limit: str | None) -> list[str]:
        """The wave's hosts this run takes on: matching ``--limit``, without a final outcome."""
        rows = {r.host: r for r in self.journal.hosts(self.id, spec.name)}
        if limit == FAILED_SELECTOR:
            failed = [h for h in spec.hosts if h in rows and rows[h].outcome is Outcome.FAILED]
            self.journal.reset_hosts(self.id, failed)
            return failed
        todo = []
        for host in spec.hosts:
            if not matches(host, limit):
                continue
            row = rows.get(host)
            if row is not None and row.outcome is not None:
                continue  # a final outcome: never touched again
            todo.append(host)
        return todo

    # ------------------------------------------------------------ the run

    async def run_wave(self, options: RunOptions) -> WaveResult:
        spec = self.wave_spec(options.wave)
        self.check_order(spec.name, options.force)
        if options.force:
            self.journal.mark_forced(self.id, spec.name)
        todo = self.hosts_to_run(spec, options.limit)
        emit = _fanout(options.subscribers)
        emit(
            RolloutStarted(
                self.id,
                RunKind.ROLLOUT,
                self.inventory.path,
                str(self.playbook_path),
                tuple(w.name for w in self.inventory.waves),
                time.time(),
                options.force,
            )
        )
        try:
            return await self._run(spec, todo, options, emit)
        finally:
            emit(RolloutFinished(self.id, time.time(), self.stop.requested))

    async def _run(
        self,
        spec: WaveSpec,
        todo: list[str],
        options: RunOptions,
        emit: Callable[[Event], None],
    ) -> WaveResult:
        # Hosts already final in this wave count towards its gate (a resumed wave).
        done: dict[str, Outcome] = {
            r.host: r.outcome
            for r in self.journal.hosts(self.id, spec.name)
            if r.outcome is not None and r.host not in todo
        }
        emit(WaveStarted(self.id, spec.name, len(todo), spec.max_fail_percentage, time.time()))
        deadline = options.deadline or spec.deadline or DEFAULT_DEADLINE
        concurrency = max(1, options.concurrency)
        # Sized to the concurrency, plus headroom for threads still unwinding after a host's
        # deadline passed (pypsrp cannot be interrupted; its own timeouts end those threads).
        executor = ThreadPoolExecutor(max_workers=concurrency * 2, thread_name_prefix="raorch-host")
        loop = asyncio.get_running_loop()
        gate_lost = False

        def failed_count() -> int:
            return sum(
                1
                for o in done.values()
                if wave_math.counts_as_failed(o, spec.skipped_counts_as_failed)
            )

        slot_freed = asyncio.Event()

        async def one(target: Target) -> None:
            try:
                await host(target)
            finally:
                slot_freed.set()

        async def host(target: Target) -> None:
            cancel = threading.Event()
            started = time.monotonic()
            emit(HostStarted(self.id, spec.name, target.name, time.time()))
            ctx = WorkContext(
                self.id,
                lambda data: self.journal.save_snapshot(self.id, target.name, data),
                self.journal.snapshot(self.id, target.name),
                cancel,
            )
            fut = loop.run_in_executor(executor, _guarded, self.work, target, ctx)
            try:
                result = await asyncio.wait_for(fut, timeout=deadline)
            except TimeoutError:
                cancel.set()
                result = WorkResult(
                    Outcome.FAILED,
                    Reason(
                        Stage.DEADLINE,
                        f"no result within the host deadline of {deadline:g} s"
                        " (the host may hang; check WinRM on it)",
                    ),
                )
            if result.applied is not None:
                self.journal.save_applied(self.id, target.name, result.applied)
            done[target.name] = result.outcome
            emit(
                HostFinished(
                    self.id,
                    spec.name,
                    target.name,
                    result.outcome,
                    result.reason,
                    time.monotonic() - started,
                    time.time(),
                    result.changes,
                )
            )

        batches = _batches(spec, todo)
        verdict: wave_math.GateVerdict | None = None
        try:
            async with AioPool(size=concurrency) as pool:
                for batch in batches:
                    remaining = len(batch)
                    for name in batch:
                        # Wait for a free slot BEFORE deciding to start the next host, so
                        # that the decision sees every host that has finished by then.
                        while pool.is_full:
                            slot_freed.clear()
                            await slot_freed.wait()
                        # Early halt: the batch cannot end within the gate any more.
                        in_batch_unfinished = remaining + pool.n_active
                        if wave_math.lost_early(
                            len(done),
                            failed_count(),
                            in_batch_unfinished,
                            spec.max_fail_percentage,
                        ):
                            gate_lost = True
                        if gate_lost or self.stop.requested:
                            break
                        remaining -= 1
                        await pool.spawn(one(self.inventory.targets[name]))
                    await pool.join()
                    verdict = wave_math.evaluate(
                        len(done), failed_count(), spec.max_fail_percentage
                    )
                    emit(
                        GateEvaluated(
                            self.id,
                            spec.name,
                            verdict.finished,
                            verdict.failed,
                            verdict.failure_percentage,
                            verdict.max_fail_percentage,
                            verdict.held,
                            time.time(),
                        )
                    )
                    if not verdict.held or self.stop.requested:
                        break
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

        counts = Counter(done.values())
        if verdict is None:  # nothing to run: judge the wave on what the journal holds
            verdict = wave_math.evaluate(len(done), failed_count(), spec.max_fail_percentage)
        all_final = all(h in done for h in spec.hosts)
        if not verdict.held:
            state = WaveState.HALTED
        elif self.stop.requested:
            state = WaveState.CANCELED
        elif all_final:
            state = WaveState.DONE
        else:
            state = WaveState.PARTIAL
        emit(WaveFinished(self.id, spec.name, state, dict(counts), time.time()))
        return WaveResult(
            self.id,
            spec.name,
            state,
            dict(counts),
            verdict,
            len(todo),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.FAILED),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.CHANGED),
        )


def _batches(spec: WaveSpec, todo: Sequence[str]) -> list[list[str]]:
    """Batch sizes come from the whole wave (``batch: 25%`` is a quarter of the wave), applied
    to the hosts this run takes on."""
    sizes = wave_math.batch_sizes(len(spec.hosts), spec.batch)
    size = sizes[0] if sizes else 1
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]


def _guarded(work: HostWork, target: Target, ctx: WorkContext) -> WorkResult:
    """No exception escapes a host: a bug in a host's work is that host's failure."""
    try:
        return work(target, ctx)
    except Exception as exc:  # the host boundary (nornir's rule)
        return WorkResult(
            Outcome.FAILED,
            Reason(Stage.APPLY, f"internal error in raorch: {type(exc).__name__}: {exc}"),
        )


def _fanout(subscribers: Sequence[Subscriber]) -> Callable[[Event], None]:
    def emit(event: Event) -> None:
        for sub in subscribers:
            sub(event)

    return emit
