"""The rollout engine: one wave of one rollout, hosts concurrently, the gate, resume.

asyncio drives the wave (``runner.WaveRun``: the hosts in flight, their deadlines and events);
each host's work goes through a dispatcher (engine/dispatch.py: a thread pool unless
``RunOptions.dispatcher`` gives another). Every state change is an event; the journal, the JSON
log and the CLI's views subscribe. Nothing here prints.

Resume: the journal knows which hosts have a final outcome (never touched again) and which were
in flight when the controller died (run again; the operations are idempotent, and the snapshot
handed back to them is the ORIGINAL one the journal kept).

Content: a rollout is one inventory and playbook content (a campaign). When the files changed
while a rollout of the same inventory is in the middle (a wave run, a later one not done), the
run is refused with a short diff until the operator chooses: go on with the changed content
(``go_on``: recorded as the rollout's next revision) or roll the open rollout back first. A
refused run leaves no record: the rollout's record is made only once every check passed.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from raorch.engine.contents import content_of, content_sha, describe_changes, target_to_json
from raorch.engine.dispatch import (
    Dispatcher,
    HostWork,
    PasswordSource,
    PlaybookRef,
    ThreadPoolDispatcher,
    WorkContext,
    WorkResult,
    in_use,
)
from raorch.engine.host import HostMode
from raorch.engine.rollback import Rollback, RollbackOptions, RollbackResult
from raorch.engine.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE,
    SiteLimits,
    SiteQueue,
    Stop,
    WaveRun,
    fanout,
)
from raorch.engine.store import ContentRow, JournalStore, RolloutRow, WaveRow
from raorch.models.errors import RefusedError
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
from raorch.models.playbook import Playbook
from raorch.models.secrets import SecretResolver
from raorch.planning import waves as wave_math
from raorch.planning.selection import PATTERN_HINT, require_matches, select_hosts

FAILED_SELECTOR = "@failed"

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FAILED_SELECTOR",
    "ContentChangedError",
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
    # What the operator needs to know what happened before and what to run next.
    before: WaveState = WaveState.PENDING  # the wave's state before this run
    wave_hosts: int = 0  # hosts in the wave
    earlier: dict[Outcome, int] = field(default_factory=dict)  # finished in earlier runs
    not_started: tuple[str, ...] = ()  # hosts of the wave with no outcome after this run


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
    # Where the hosts' passwords come from, where the work runs; None: the references resolved
    # there (env, file, keyring; never a prompt).
    passwords: PasswordSource | None = None
    # Where the hosts' work runs (and its rollback's); None: a thread pool of this process,
    # sized to the concurrency, running the rollout's work (and ``rollback_work``).
    dispatcher: Dispatcher[WorkResult] | None = None
    # Hosts in flight per site (--site-concurrency), within ``concurrency``.
    sites: SiteLimits = field(default_factory=SiteLimits)


class ContentChangedError(RefusedError):
    """The inventory or playbook changed while a rollout of this inventory is in the middle."""

    def __init__(self, open_row: RolloutRow, changes: list[str], waves: list[str]) -> None:
        self.open_row = open_row
        self.changes = changes
        self.waves = waves
        super().__init__(
            f"the inventory or playbook changed since rollout {open_row.id} began "
            f"({'; '.join(waves)}): " + "; ".join(changes),
            "go on with it and the changed content (--continue, recorded in the journal), or "
            f"roll it back first (raorch rollback --rollout {open_row.id}); nothing was done",
        )


def campaign_key(inventory: Path, playbook: Path) -> str:
    """Waves form one rollout per inventory and playbook content."""
    digest = hashlib.sha256()
    for path in (inventory, playbook):
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def check_limit(inventory: ResolvedInventory, hosts: Sequence[str], limit: str | None) -> None:
    """A ``--limit`` pattern that selects no host of the run is almost always a typo."""
    if limit is None or limit == FAILED_SELECTOR:
        return
    require_matches(hosts, limit, "of this run", PATTERN_HINT + ", or @failed")


class Rollout:
    """One rollout (campaign) of one inventory + playbook, backed by the journal."""

    def __init__(
        self,
        journal: JournalStore,
        inventory: ResolvedInventory,
        playbook_path: Path,
        work: HostWork,
        playbook: Playbook | None = None,
        *,
        go_on: bool = False,
    ) -> None:
        """``playbook``: the checked playbook, kept in the journal (rollback reads it there).
        ``go_on``: when the files changed in the middle of a rollout of this inventory, go on
        with it and the changed content (else that is refused, with the differences)."""
        self.journal = journal
        self.inventory = inventory
        self.playbook_path = playbook_path
        self.work = work
        self.go_on = go_on
        campaign = campaign_key(Path(inventory.path), playbook_path)
        self.content = content_of(
            campaign,
            inventory,
            content_sha(Path(inventory.path)),
            str(playbook_path),
            content_sha(playbook_path),
            playbook,
        )
        # Found, never made here: the record is made once the run's checks passed (begin).
        self._row: RolloutRow | None = journal.find_rollout(campaign)
        self._adopt: tuple[RolloutRow, str] | None = None  # (open rollout, why) to go on with
        self.revision: int | None = None
        self.notes: list[str] = []  # for the operator: what was decided about the content
        self.stop = Stop()

    @property
    def row(self) -> RolloutRow:
        return self.begin()

    @property
    def id(self) -> str:
        return self.row.id

    def begin(self) -> RolloutRow:
        """The rollout's record: the open one of this content, the open one the operator goes
        on with (its next revision recorded now), or a new one."""
        if self._row is None:
            if self._adopt is not None:
                adopted, note = self._adopt
                self.journal.add_revision(
                    adopted.id, self.content, tuple(w.name for w in self.inventory.waves), note
                )
                self._row = self.journal.rollout(adopted.id)
            else:
                self._row = self.journal.open_rollout(
                    self.content.campaign,
                    self.inventory.path,
                    str(self.playbook_path),
                    tuple(w.name for w in self.inventory.waves),
                    self.content.playbook_sha,
                    self.content,
                )
            assert self._row is not None
        if self.revision is None:
            self.revision = self.journal.current_revision(self._row.id)
        return self._row

    # ------------------------------------------------------------ the content

    def _open_of_this_inventory(self) -> RolloutRow | None:
        """The newest open rollout of this inventory file that ran hosts (other content)."""
        for row in reversed(self.journal.open_rollouts()):
            if row.inventory == self.inventory.path and self.journal.has_hosts(row.id):
                return row
        return None

    def _check_content(self) -> None:
        """No open rollout of this content: is one of this inventory in the middle?"""
        if self._row is not None or self._adopt is not None:
            return
        other = self._open_of_this_inventory()
        if other is None:
            return
        waves = {w.name: w for w in self.journal.waves(other.id)}
        states = [waves[n] for n in other.waves if n in waves]
        if all(w.state is WaveState.DONE and w.gate_held for w in states):
            self.notes.append(
                f"rollout {other.id} finished every wave and stays as it is; the changed "
                "inventory or playbook starts a new rollout on top of it (to undo both, roll "
                f"this one back first, then {other.id})"
            )
            return
        contents = self.journal.contents(other.id)
        current = (
            contents[-1]
            if contents
            else ContentRow(
                other.id,
                1,
                other.campaign,
                "",
                other.playbook,
                other.playbook_sha,
                "",
                "",
                "began",
                other.created_at,
            )
        )
        changes = describe_changes(current, self.content)
        if not changes:
            self._adopt = (other, "the files' text changed; no setting, wave or host did")
            self.notes.append(
                f"the inventory or playbook text changed (comments or layout), but no setting, "
                f"wave or host did: going on with rollout {other.id} (recorded)"
            )
            return
        if not self.go_on:
            raise ContentChangedError(other, changes, [_wave_text(w) for w in states])
        self._adopt = (other, "continued with changed content: " + "; ".join(changes))
        self.notes.append(
            f"going on with rollout {other.id} and the changed content (recorded as its "
            "revision); hosts that finished already keep what the earlier content set"
        )

    # ------------------------------------------------------------ checks before a run

    def check(self, wave: str, limit: str | None, force: bool) -> WaveSpec:
        """Every refusal a run of ``wave`` can meet, before any record is made: a refused
        command leaves the journal as it was."""
        spec = self.wave_spec(wave)
        self._check_content()
        self.check_order(spec.name, force)
        if limit == FAILED_SELECTOR:
            self._check_failed(spec)
        else:
            check_limit(self.inventory, spec.hosts, limit)
        return spec

    def _known_row(self) -> RolloutRow | None:
        if self._row is not None:
            return self._row
        return None if self._adopt is None else self._adopt[0]

    def _check_failed(self, spec: WaveSpec) -> None:
        """``@failed`` retries failed hosts of an open rollout: without one, there is nothing
        it could mean (and a new, empty rollout for ``--last`` to pick must not be made). An
        open rollout with no failed host left runs none (exit 0, and says so)."""
        row = self._known_row()
        if row is None:
            closed = [
                r
                for r in self.journal.rollouts()
                if r.campaign == self.content.campaign and r.closed_at is not None
            ]
            why = (
                f"the last one, {closed[-1].id}, was rolled back and is closed"
                if closed
                else "none has run yet"
            )
            raise RefusedError(
                f"--limit @failed retries the failed hosts of an open rollout, and there is no "
                f"open rollout of this inventory and playbook ({why})",
                f"run the wave without --limit to start a new rollout "
                f"(raorch rollout --wave {spec.name})",
            )

    def wave_spec(self, name: str) -> WaveSpec:
        return self.inventory.require_wave(name)

    def check_order(self, name: str, force: bool) -> None:
        """A later wave (in the inventory's order) is refused until every earlier wave finished
        with its gate held. Reads only: a new rollout's waves are all pending."""
        row = self._known_row()
        recorded = {} if row is None else {w.name: w for w in self.journal.waves(row.id)}
        earlier = []
        for spec in self.inventory.waves:
            if spec.name == name:
                break
            w = recorded.get(spec.name)
            if w is None:
                earlier.append(f"{spec.name} ({WaveState.PENDING.value})")
            elif not (w.state is WaveState.DONE and w.gate_held):
                earlier.append(f"{w.name} ({w.state.value})")
        if earlier and not force:
            which = "a new rollout" if row is None else f"rollout {row.id}"
            raise RefusedError(
                f"wave {name!r} of {which} cannot start: the earlier wave(s) "
                f"{', '.join(earlier)} have not finished with their gate held",
                "run the earlier waves first (raorch rollout --wave NAME), or pass --force "
                "to override (recorded in the journal)",
            )

    def hosts_to_run(self, spec: WaveSpec, limit: str | None) -> list[str]:
        """The wave's hosts this run takes on: matching ``--limit``, without a final outcome.

        A host's record is looked up whatever wave it ran in (an inventory that moved it to
        another wave must not apply it twice and lose its first outcome). A host a rollback
        restored is pending again. A wave whose gate failed and that was rolled back for it
        (``on_gate_failure: rollback``) runs again in full: its failed hosts too (those with
        nothing to restore, e.g. unreachable, were not rolled back, and would otherwise hold
        the gate lost for ever)."""
        rows = {r.host: r for r in self.journal.hosts(self.id)}
        if limit == FAILED_SELECTOR:
            failed = [h for h in spec.hosts if h in rows and rows[h].outcome is Outcome.FAILED]
            self.journal.reset_hosts(self.id, failed)
            return failed
        check_limit(self.inventory, spec.hosts, limit)
        rolled_back = self.journal.rolled_back(self.id)
        wave_row = self._wave_row(spec.name)
        again = wave_row is not None and (
            wave_row.state is WaveState.ROLLED_BACK
            or (wave_row.state is WaveState.HALTED and spec.on_gate_failure is GateAction.ROLLBACK)
        )
        todo = []
        for host in select_hosts(spec.hosts, limit):
            row = rows.get(host)
            final = row is not None and row.outcome is not None and host not in rolled_back
            if final and again and row is not None and row.outcome is Outcome.FAILED:
                final = False
            if final:
                continue  # a final outcome: never touched again (unless rolled back since)
            todo.append(host)
        return todo

    def _wave_row(self, name: str) -> WaveRow | None:
        return next((w for w in self.journal.waves(self.id) if w.name == name), None)

    # ------------------------------------------------------------ the run

    async def run_wave(self, options: RunOptions) -> WaveResult:
        self.check(options.wave, options.limit, options.force)
        with self.journal.lock(self.id):
            return await self._locked_run_wave(options)

    async def _locked_run_wave(self, options: RunOptions) -> WaveResult:
        spec = self.wave_spec(options.wave)
        self.check_order(spec.name, options.force)  # again: another run may have ended since
        if options.force:
            self.journal.mark_forced(self.id, spec.name)
        before = self._wave_row(spec.name)
        todo = self.hosts_to_run(spec, options.limit)
        # How each host is reached, for a rollback after the inventory stopped naming it.
        self.journal.save_targets(
            self.id, {h: target_to_json(self.inventory.targets[h]) for h in todo}
        )
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
            return await self._run(
                spec, todo, options, emit, WaveState.PENDING if before is None else before.state
            )
        finally:
            emit(RolloutFinished(self.id, time.time(), self.stop.requested))

    async def _run(
        self,
        spec: WaveSpec,
        todo: list[str],
        options: RunOptions,
        emit: Callable[[Event], None],
        before: WaveState = WaveState.PENDING,
    ) -> WaveResult:
        gate = _Gate(self.id, spec, self._finished_before(spec, todo), emit)
        emit(
            WaveStarted(
                self.id,
                spec.name,
                len(todo),
                spec.max_fail_percentage,
                time.time(),
                wave_hosts=len(spec.hosts),
                earlier=gate.earlier,
            )
        )
        with in_use(options.dispatcher, lambda: self._thread_pool(options)) as dispatcher:
            verdict = await self._run_batches(spec, todo, options, gate, dispatcher)
        if verdict is None:  # nothing to run: judge the wave on what the journal holds
            verdict = gate.judge()
        state = self._wave_state(spec, gate, verdict)
        counts = Counter(gate.done.values())
        emit(WaveFinished(self.id, spec.name, state, dict(counts), time.time()))
        done = gate.done
        return WaveResult(
            self.id,
            spec.name,
            state,
            dict(counts),
            verdict,
            len(todo),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.FAILED),
            tuple(h for h in spec.hosts if done.get(h) is Outcome.CHANGED),
            await self._rollback_if_asked(spec, state, options),
            before=before,
            wave_hosts=len(spec.hosts),
            earlier=gate.earlier,
            not_started=tuple(h for h in spec.hosts if h not in done),
        )

    def _finished_before(self, spec: WaveSpec, todo: list[str]) -> dict[str, Outcome]:
        """Hosts of this wave already final: they count towards its gate (a resumed wave); a
        host a rollback restored is not final (pending again)."""
        taking_on = set(todo)
        rolled_back = self.journal.rolled_back(self.id)
        members = set(spec.hosts)
        return {
            r.host: r.outcome
            for r in self.journal.hosts(self.id)
            if r.host in members
            and r.outcome is not None
            and r.host not in taking_on
            and r.host not in rolled_back
        }

    def _thread_pool(self, options: RunOptions) -> ThreadPoolDispatcher[WorkResult]:
        """The default dispatcher: the rollout's work in threads of this process, each host's
        snapshot committed to the journal."""
        return ThreadPoolDispatcher(
            {HostMode.APPLY: self.work},
            concurrency=options.concurrency,
            passwords=SecretResolver() if options.passwords is None else options.passwords,
            snapshots=self.journal,
        )

    def _context(self, target: Target, deadline: float) -> WorkContext:
        return WorkContext(
            self.id,
            HostMode.APPLY,
            target,
            self.journal.snapshot(self.id, target.name),
            deadline,
            PlaybookRef(self.content.playbook_sha, self.revision),
        )

    async def _run_batches(
        self,
        spec: WaveSpec,
        todo: list[str],
        options: RunOptions,
        gate: _Gate,
        dispatcher: Dispatcher[WorkResult],
    ) -> wave_math.GateVerdict | None:
        """The batches in order, the gate judged after each; the last verdict (None: no batch
        ran)."""
        deadline = options.deadline or spec.deadline or DEFAULT_DEADLINE
        verdict: wave_math.GateVerdict | None = None
        gate.withdraw = dispatcher.withdraw
        # Ctrl-C: no new host starts, and the dispatcher gives back those it has not started.
        self.stop.listeners.append(dispatcher.withdraw)
        try:
            async with WaveRun(
                dispatcher,
                gate.emit,
                rollout_id=self.id,
                wave=spec.name,
                kind=RunKind.ROLLOUT,
                concurrency=options.concurrency,
                deadline=deadline,
                context=partial(self._context, deadline=deadline),
                on_result=partial(self._keep, gate),
                sites=options.sites,
            ) as run:
                gate.run = run
                for batch in _batches(spec, todo):
                    await self._run_batch(batch, run, gate)
                    verdict = gate.judge()
                    if not verdict.held or self.stop.requested:
                        break
        finally:
            self.stop.listeners.remove(dispatcher.withdraw)
        return verdict

    async def _run_batch(self, batch: list[str], run: WaveRun, gate: _Gate) -> None:
        """Start the batch's hosts while the gate can still hold and no stop was asked; wait
        for every host started."""
        gate.unstarted = SiteQueue(self.inventory.targets[name] for name in batch)
        while gate.unstarted:
            # Wait for a free slot (of the run, and of a host's site) BEFORE deciding to start
            # the next host, so that the decision sees every host that has finished by then.
            target = await run.next_host(gate.unstarted)
            # Early halt: the batch cannot end within the gate any more.
            if gate.lost_early(len(gate.unstarted) + 1 + run.in_flight):
                gate.lose()
            if gate.lost or self.stop.requested:
                break
            await run.start(target)
        gate.unstarted = SiteQueue(())
        await run.join()

    def _keep(self, gate: _Gate, target: Target, result: WorkResult) -> None:
        """What the controller keeps of a host's result: its changes and Windows in the
        journal, its outcome for the gate (which may be lost with it: then the hosts the
        dispatcher has not started are given back at once, not run)."""
        if result.applied is not None:
            self.journal.save_applied(self.id, target.name, result.applied)
        if result.platform is not None:
            platform = result.platform
            self.journal.save_platform(
                self.id, target.name, platform.caption, platform.os_version, platform.profile
            )
        gate.finish(target.name, result.outcome)
        # This host is still counted in flight until its result is kept.
        in_flight = 0 if gate.run is None else gate.run.in_flight - 1
        if not gate.lost and gate.lost_early(len(gate.unstarted) + in_flight):
            gate.lose()

    def _wave_state(self, spec: WaveSpec, gate: _Gate, verdict: wave_math.GateVerdict) -> WaveState:
        if not verdict.held:
            return WaveState.HALTED
        if self.stop.requested:
            return WaveState.CANCELED
        if all(h in gate.done for h in spec.hosts):
            return WaveState.DONE
        return WaveState.PARTIAL

    async def _rollback_if_asked(
        self, spec: WaveSpec, state: WaveState, options: RunOptions
    ) -> RollbackResult | None:
        """The wave's gate failed and the inventory asks to undo what it changed."""
        if not (
            state is WaveState.HALTED
            and spec.on_gate_failure is GateAction.ROLLBACK
            and options.rollback_work is not None
        ):
            return None
        return await Rollback(self.journal, self.row, self.inventory).run(
            RollbackOptions(
                wave=spec.name,
                concurrency=options.concurrency,
                deadline=options.deadline,
                subscribers=options.subscribers,
                work=options.rollback_work,
                emit_rollout_events=False,
                close_when_done=False,
                passwords=options.passwords,
                dispatcher=options.dispatcher,
                sites=options.sites,
            ),
            stop=self.stop,
        )


class _Gate:
    """A wave's gate on what its hosts have done so far (``done``: hosts finished in earlier
    runs, then those of this run as they finish)."""

    def __init__(
        self,
        rollout_id: str,
        spec: WaveSpec,
        done: dict[str, Outcome],
        emit: Callable[[Event], None],
    ) -> None:
        self.rollout_id = rollout_id
        self.spec = spec
        self.done = done
        self.earlier = dict(Counter(done.values()))
        # Kept as hosts finish: the gate is asked before every host starts and after every
        # host ends, and counting ``done`` each time made a wave of N hosts cost O(N^2)
        # (at 8,000 hosts, most of the controller's CPU growth with the wave).
        self._failed = sum(1 for o in done.values() if self._fails(o))
        self.emit = emit
        self.lost = False  # the batch could not end within the gate: no host starts any more
        self.unstarted = SiteQueue(())  # the running batch's hosts not started yet
        self.run: WaveRun | None = None
        self.withdraw: Callable[[], None] = lambda: None  # the dispatcher's

    def lose(self) -> None:
        """The batch cannot end within the gate: no host starts any more, and the hosts the
        dispatcher has not started yet (queued for a worker) are given back."""
        self.lost = True
        self.withdraw()

    def _fails(self, outcome: Outcome) -> bool:
        return wave_math.counts_as_failed(outcome, self.spec.skipped_counts_as_failed)

    def finish(self, host: str, outcome: Outcome) -> None:
        """A host of this run has its outcome."""
        before = self.done.get(host)
        if before is not None and self._fails(before):
            self._failed -= 1
        self.done[host] = outcome
        if self._fails(outcome):
            self._failed += 1

    def failed(self) -> int:
        return self._failed

    def lost_early(self, unfinished: int) -> bool:
        return wave_math.lost_early(
            len(self.done), self.failed(), unfinished, self.spec.max_fail_percentage
        )

    def judge(self) -> wave_math.GateVerdict:
        """The gate on what the wave's hosts have done so far, recorded as an event."""
        verdict = wave_math.evaluate(len(self.done), self.failed(), self.spec.max_fail_percentage)
        self.emit(
            GateEvaluated(
                self.rollout_id,
                self.spec.name,
                verdict.finished,
                verdict.failed,
                verdict.failure_percentage,
                verdict.max_fail_percentage,
                verdict.held,
                time.time(),
            )
        )
        return verdict


def _wave_text(wave: WaveRow) -> str:
    return f"{wave.name} {wave.state.value}"


def _batches(spec: WaveSpec, todo: Sequence[str]) -> list[list[str]]:
    """Batch sizes come from the whole wave (``batch: 25%`` is a quarter of the wave), applied
    to the hosts this run takes on."""
    sizes = wave_math.batch_sizes(len(spec.hosts), spec.batch)
    size = sizes[0] if sizes else 1
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]
