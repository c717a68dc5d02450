"""Rollback: restore every host raorch changed in a rollout (or a wave) from its snapshot.

Hosts taken on: those of the rollout with a snapshot in the journal whose outcome says raorch
may have written to them (changed, failed after the snapshot, or killed in flight). Hosts that
were unchanged or refused were never written to. A host already rolled back in this rollout
is not touched again (so a second rollback changes nothing); a conflict or a failure is tried
again on the next run (with ``--force`` a conflict is restored over).

Outcomes are recorded in the journal's ``rollbacks`` table and timeline; a rollback killed
with SIGKILL resumes on the next run like a rollout does. When every changed host of the whole
rollout is rolled back, the rollout is closed: the same inventory and playbook then start a
new rollout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raorch.engine.contents import PlaybookBook, content_sha
from raorch.engine.dispatch import (
    Dispatcher,
    HostWork,
    PasswordSource,
    ThreadPoolDispatcher,
    WorkContext,
    WorkResult,
    in_use,
)
from raorch.engine.host import HostMode
from raorch.engine.runner import DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, Stop, WaveRun, fanout
from raorch.engine.store import JournalStore, RolloutRow
from raorch.models.errors import InputError, Location, Problem, RefusedError
from raorch.models.events import (
    Event,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    Subscriber,
    WaveFinished,
    WaveStarted,
)
from raorch.models.inventory import ResolvedInventory, Target
from raorch.models.load import load_playbook
from raorch.models.outcomes import Outcome, WaveState
from raorch.models.playbook import Playbook
from raorch.models.secrets import SecretResolver
from raorch.planning.selection import require_matches, select_hosts

# Outcomes after which raorch may have written to a host (None: killed while in flight).
_MAY_HAVE_WRITTEN = (Outcome.CHANGED, Outcome.FAILED, None)


@dataclass(slots=True)
class RollbackOptions:
    work: HostWork
    wave: str | None = None
    limit: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    deadline: float | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    # False when the rollout engine runs it inside a rollout (on_gate_failure: rollback).
    emit_rollout_events: bool = True
    # Close the rollout once no host is left to roll back, however the runs were narrowed
    # (--wave, --limit). False inside a rollout (on_gate_failure: rollback): the rollout goes on.
    close_when_done: bool = True
    force: bool = False  # restore over settings someone else changed since raorch set them
    # As RunOptions: where the passwords come from; where the work runs (None: a thread pool).
    passwords: PasswordSource | None = None
    dispatcher: Dispatcher[WorkResult] | None = None


@dataclass(frozen=True, slots=True)
class RollbackResult:
    rollout_id: str
    counts: dict[Outcome, int]
    ran: int
    conflict_hosts: tuple[str, ...]
    failed_hosts: tuple[str, ...]
    closed: bool  # the whole rollout is rolled back


class Rollback:
    def __init__(
        self, journal: JournalStore, row: RolloutRow, inventory: ResolvedInventory
    ) -> None:
        self.journal = journal
        self.row = row
        self.inventory = inventory
        self.stop = Stop()

    @property
    def id(self) -> str:
        return self.row.id

    def candidates(self, wave: str | None, limit: str | None) -> list[tuple[str, str]]:
        """(host, wave) pairs to roll back now, in journal order."""
        if wave is not None and wave not in self.row.waves:
            raise InputError(
                [
                    Problem(
                        Location("--wave"),
                        f"rollout {self.id} has no wave named {wave!r}",
                        "its waves are: " + ", ".join(self.row.waves),
                    )
                ]
            )
        snapshots = self.journal.snapshot_hosts(self.id)
        done = self.journal.rolled_back(self.id)
        rows = [
            r
            for r in self.journal.hosts(self.id, wave)
            if r.host in snapshots and r.outcome in _MAY_HAVE_WRITTEN
        ]
        names = [r.host for r in rows]
        if limit:
            require_matches(
                names,
                limit,
                f"raorch changed in rollout {self.id}",
                "check the host names with `raorch show ROLLOUT`",
            )
            chosen = set(select_hosts(names, limit))
            rows = [r for r in rows if r.host in chosen]
        return [(r.host, r.wave) for r in rows if r.host not in done]

    def playbooks(self, hosts: Sequence[str]) -> tuple[Playbook | None, PlaybookBook]:
        """The playbooks ``hosts`` were applied with: what raorch wrote is worked out from them.

        The journal's (``PlaybookBook``), whatever became of the playbook file. The file only
        for a rollout recorded by an older raorch, which kept the playbook's hash and not its
        settings: then it must be there and unchanged (its hash), else the rollback is refused,
        since a changed playbook would restore other items than raorch wrote. Returns that
        file's playbook (None when the journal has every host's) and the journal's book.
        """
        book = PlaybookBook.of(self.journal, self.id)
        if book.complete(hosts):
            return None, book
        path = Path(self.row.playbook)
        if not path.exists() or (
            self.row.playbook_sha and content_sha(path) != self.row.playbook_sha
        ):
            raise RefusedError(
                f"rollout {self.id} was recorded by an older raorch, which kept no copy of its "
                f"playbook, and the playbook it used ({self.row.playbook}) is missing or has "
                "changed since; rollback works out what raorch wrote from it",
                "put the playbook back as it was for that rollout",
            )
        return load_playbook(path), book

    def close_if_done(self) -> bool:
        """Close the rollout when every host raorch changed in it is rolled back (also when
        that took several runs, each narrowed to a wave or hosts). True when it is closed."""
        if self.journal.rollout_closed(self.id):
            return True
        if self.candidates(None, None) or not self.journal.rolled_back(self.id):
            return False
        self.journal.close_rollout(self.id)
        return True

    async def run(self, options: RollbackOptions, stop: Stop | None = None) -> RollbackResult:
        if not options.emit_rollout_events:
            # Inside a rollout (on_gate_failure: rollback), which holds the run lock already.
            return await self._run(options, stop)
        with self.journal.lock(self.id):
            return await self._run(options, stop)

    async def _run(self, options: RollbackOptions, stop: Stop | None) -> RollbackResult:
        if stop is not None:
            self.stop = stop
        todo = self.candidates(options.wave, options.limit)
        missing = [h for h, _ in todo if h not in self.inventory.targets]
        if missing:
            raise RefusedError(
                f"the inventory {self.inventory.path} no longer names host(s) "
                f"{', '.join(missing[:5])} that rollout {self.id} changed",
                "restore the inventory the rollout used, or narrow with --limit",
            )
        emit = fanout(options.subscribers)
        if options.emit_rollout_events:
            emit(
                RolloutStarted(
                    self.id,
                    RunKind.ROLLBACK,
                    self.row.inventory,
                    self.row.playbook,
                    self.row.waves,
                    time.time(),
                )
            )
        counts: Counter[Outcome] = Counter()
        outcome_of: dict[str, Outcome] = {}
        try:
            by_wave: dict[str, list[str]] = {}
            for host, wave in todo:
                by_wave.setdefault(wave, []).append(host)
            # Later waves first: undo in the reverse order of the rollout.
            for wave in [w for w in reversed(self.row.waves) if w in by_wave]:
                if self.stop.requested:
                    break
                await self._wave(wave, by_wave[wave], options, emit, outcome_of)
        finally:
            if options.emit_rollout_events:
                emit(RolloutFinished(self.id, time.time(), self.stop.requested, RunKind.ROLLBACK))
        counts.update(outcome_of.values())
        closed = False
        if options.close_when_done and not self.stop.requested:
            closed = self.close_if_done()
        return RollbackResult(
            self.id,
            dict(counts),
            len(outcome_of),
            tuple(h for h, o in outcome_of.items() if o is Outcome.CONFLICT),
            tuple(h for h, o in outcome_of.items() if o is Outcome.FAILED),
            closed,
        )

    async def _wave(
        self,
        wave: str,
        hosts: list[str],
        options: RollbackOptions,
        emit: Callable[[Event], None],
        outcome_of: dict[str, Outcome],
    ) -> None:
        emit(WaveStarted(self.id, wave, len(hosts), 100.0, time.time(), RunKind.ROLLBACK))
        deadline = options.deadline or DEFAULT_DEADLINE

        def context(target: Target) -> WorkContext:
            snapshot = self.journal.snapshot(self.id, target.name)
            return WorkContext(
                self.id, HostMode.ROLLBACK, target, snapshot, deadline, force=options.force
            )

        def keep(target: Target, result: WorkResult) -> None:
            outcome_of[target.name] = result.outcome

        with in_use(options.dispatcher, lambda: _thread_pool(options)) as dispatcher:
            async with WaveRun(
                dispatcher,
                emit,
                rollout_id=self.id,
                wave=wave,
                kind=RunKind.ROLLBACK,
                concurrency=options.concurrency,
                deadline=deadline,
                context=context,
                on_result=keep,
            ) as run:
                for name in hosts:
                    if self.stop.requested:
                        break
                    await run.start(self.inventory.targets[name])
        state = WaveState.CANCELED if self.stop.requested else WaveState.DONE
        counts = Counter(outcome_of[h] for h in hosts if h in outcome_of)
        emit(WaveFinished(self.id, wave, state, dict(counts), time.time(), RunKind.ROLLBACK))
        await asyncio.sleep(0)


def _thread_pool(options: RollbackOptions) -> ThreadPoolDispatcher[WorkResult]:
    """The default dispatcher: the rollback's work in threads of this process (it commits no
    snapshot: it restores from the one the journal kept)."""
    return ThreadPoolDispatcher(
        {HostMode.ROLLBACK: options.work},
        concurrency=options.concurrency,
        passwords=SecretResolver() if options.passwords is None else options.passwords,
    )
