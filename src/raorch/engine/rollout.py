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
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncio_pool import AioPool

from raorch.engine.cancel import Cancel
from raorch.engine.journal import Journal, RolloutRow
from raorch.engine.lock import run_lock
from raorch.engine.rollback import Rollback, RollbackOptions, RollbackResult
from raorch.engine.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE,
    HostRunner,
    HostWork,
    Stop,
    WorkContext,
    WorkResult,
    fanout,
)
from raorch.models.errors import InputError, Location, Problem, RefusedError
from raorch.models.events import (
    Event,
    GateEvaluated,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    Subscriber,
    WaveFinished,
    WaveStarted,
)
from raorch.models.inventory import GateAction, ResolvedInventory, Target, WaveSpec
from raorch.models.outcomes import Outcome, WaveState
from raorch.planning import waves as wave_math
from raorch.planning.selection import select_hosts, unmatched_patterns

FAILED_SELECTOR = "@failed"

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FAILED_SELECTOR",
    "HostWork",
    "Rollout",
    "RunOptions",
    "WaveResult",
    "WorkContext",
    "WorkResult",
    "campaign_key",
]


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
    rollback: RollbackResult | None = None  # on_gate_failure: rollback


@dataclass(slots=True)
class RunOptions:
    wave: str
    limit: str | None = None
    force: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    deadline: float | None = None  # per host, seconds; None = the wave's or a default
    subscribers: list[Subscriber] = field(default_factory=list)
    # What `on_gate_failure: rollback` runs on the wave's changed hosts; None = halt only.
    rollback_work: HostWork | None = None


def campaign_key(inventory: Path, playbook: Path) -> str:
    """Waves form one rollout per inventory and playbook content."""
    digest = hashlib.sha256()
    for path in (inventory, playbook):
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def content_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_limit(inventory: ResolvedInventory, hosts: Sequence[str], limit: str | None) -> None:
    """A ``--limit`` pattern that selects no host of the run is almost always a typo."""
    if limit is None or limit == FAILED_SELECTOR:
        return
    missing = unmatched_patterns(hosts, limit)
    if missing:
        raise InputError(
            [
                Problem(
                    Location("--limit"),
                    f"pattern(s) {', '.join(missing)} match no host of this run",
                    "patterns are comma-separated fnmatch patterns on host names "
                    "(e.g. 'ws-01*,srv-?'), or @failed",
                )
            ]
        )


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
            content_sha(playbook_path),
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
        check_limit(self.inventory, spec.hosts, limit)
        rolled_back = self.journal.rolled_back(self.id)
        todo = []
        for host in select_hosts(spec.hosts, limit):
            row = rows.get(host)
            if row is not None and row.outcome is not None and host not in rolled_back:
                continue  # a final outcome: never touched again (unless rolled back since)
            todo.append(host)
        return todo

    # ------------------------------------------------------------ the run

    async def run_wave(self, options: RunOptions) -> WaveResult:
        with run_lock(self.journal.path.parent, self.id):
            return await self._locked_run_wave(options)

    async def _locked_run_wave(self, options: RunOptions) -> WaveResult:
        spec = self.wave_spec(options.wave)
        self.check_order(spec.name, options.force)
        if options.force:
            self.journal.mark_forced(self.id, spec.name)
        todo = self.hosts_to_run(spec, options.limit)
        emit = fanout(options.subscribers)
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
        taking_on = set(todo)
        done: dict[str, Outcome] = {
            r.host: r.outcome
            for r in self.journal.hosts(self.id, spec.name)
            if r.outcome is not None and r.host not in taking_on
        }
        emit(WaveStarted(self.id, spec.name, len(todo), spec.max_fail_percentage, time.time()))
        deadline = options.deadline or spec.deadline or DEFAULT_DEADLINE
        concurrency = max(1, options.concurrency)
        gate_lost = False

        def failed_count() -> int:
            return sum(
                1
                for o in done.values()
                if wave_math.counts_as_failed(o, spec.skipped_counts_as_failed)
            )

        def context(target: Target, cancel: Cancel) -> WorkContext:
            return WorkContext(
                self.id,
                lambda data: self.journal.save_snapshot(self.id, target.name, data),
                self.journal.snapshot(self.id, target.name),
                cancel,
            )

        runner = HostRunner(
            self.id,
            spec.name,
            self.work,
            emit,
            concurrency=concurrency,
            deadline=deadline,
            context=context,
        )
        slot_freed = asyncio.Event()

        async def one(target: Target) -> None:
            try:
                result = await runner.run(target)
                if result.applied is not None:
                    self.journal.save_applied(self.id, target.name, result.applied)
                if result.platform is not None:
                    platform = result.platform
                    self.journal.save_platform(
                        self.id,
                        target.name,
                        platform.caption,
                        platform.os_version,
                        platform.profile,
                    )
                done[target.name] = result.outcome
            finally:
                slot_freed.set()

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
            runner.__exit__(None, None, None)

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
        rollback: RollbackResult | None = None
        if (
            state is WaveState.HALTED
            and spec.on_gate_failure is GateAction.ROLLBACK
            and options.rollback_work is not None
        ):
            # The wave's gate failed and the inventory asks to undo what it changed.
            rollback = await Rollback(self.journal, self.row, self.inventory).run(
                RollbackOptions(
                    wave=spec.name,
                    concurrency=concurrency,
                    deadline=options.deadline,
                    subscribers=options.subscribers,
                    work=options.rollback_work,
                    emit_rollout_events=False,
                    close_when_done=False,
                ),
                stop=self.stop,
            )
        return WaveResult(
            self.id,
            spec.name,
            state,
            dict(counts),
            verdict,
            len(todo),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.FAILED),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.CHANGED),
            rollback,
        )


def _batches(spec: WaveSpec, todo: Sequence[str]) -> list[list[str]]:
    """Batch sizes come from the whole wave (``batch: 25%`` is a quarter of the wave), applied
    to the hosts this run takes on."""
    sizes = wave_math.batch_sizes(len(spec.hosts), spec.batch)
    size = sizes[0] if sizes else 1
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]
