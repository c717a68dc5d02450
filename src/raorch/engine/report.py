"""The change report of one rollout: a typed model built from the journal, for people.

``build_report`` reads the journal through its read methods only (rollout, waves, hosts, runs,
applied changes, rollbacks, platforms, verify verdicts; snapshots only for hosts an older raorch
journaled without their platform) and returns a ``ChangeReport``: plain values, no I/O, no
formatting. ``raorch.engine.report_html`` turns it into one HTML file; ``raorch report`` (the
CLI) chooses the rollout and writes the file.

What a host's standing means (``HostStatus``): its last rollout outcome, unless a rollback took
it on since (rolled back, a conflict left alone, or a failed restore). A host the journal never
saw (a wave halted before it) is not in the report: the report tells what happened.

Nothing secret is in the journal (passwords are never written there), so nothing secret can be
in the report; it holds host names, helpers, registry values and reasons, which the renderer
escapes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from raorch.engine.store import (
    HostRow,
    JournalReader,
    PlatformRow,
    RollbackRow,
    RolloutRow,
    RunRow,
    VerifyRow,
    WaveRow,
)
from raorch.models.events import RunKind
from raorch.models.outcomes import Outcome, Stage, WaveState
from raorch.planning.plan import Change, changes_from_json
from raorch.planning.profile import HostProfile, host_profile
from raorch.planning.snapshot import Snapshot, SnapshotFormatError

UNKNOWN_PLATFORM = "not read (no answer from the host)"
TOP_REASONS = 12  # ranked reasons shown one by one; the rest are summed in one line


class HostStatus(StrEnum):
    """Where a host stands at the end, for the change board."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already as the playbook wants: nothing written
    REFUSED = "refused"  # pre-flight said no: nothing written (Outcome.SKIPPED)
    FAILED = "failed"
    ROLLED_BACK = "rolled back"
    CONFLICT = "rollback conflict"  # changed since by someone else: left alone
    ROLLBACK_FAILED = "rollback failed"
    IN_FLIGHT = "in flight"  # started, no outcome (running, or the controller was killed)


# The order of the summary, the legends and the stacked bars.
STATUS_ORDER = tuple(HostStatus)
PROBLEM_STATUSES = frozenset(
    {HostStatus.FAILED, HostStatus.CONFLICT, HostStatus.ROLLBACK_FAILED, HostStatus.REFUSED}
)


class RolloutStatus(StrEnum):
    OPEN = "open"  # waves left to run, halted, or rolled back in part
    DONE = "done"  # every wave finished with its gate held
    ROLLED_BACK = "rolled back"  # closed: everything raorch changed was restored


@dataclass(frozen=True, slots=True)
class RunSummary:
    kind: RunKind
    account: str  # user@machine; "" when an older raorch did not record it
    started_at: float
    finished_at: float | None
    forced: bool
    interrupted: bool


@dataclass(frozen=True, slots=True)
class WaveSummary:
    name: str
    state: WaveState
    hosts: int  # hosts of the wave the journal holds (started at least once)
    max_fail_percentage: float
    gate_held: bool | None  # None: never evaluated
    failure_percentage: float | None
    forced: bool
    started_at: float | None
    finished_at: float | None
    counts: tuple[tuple[HostStatus, int], ...]  # STATUS_ORDER, zeros left out


@dataclass(frozen=True, slots=True)
class WaveTimes:
    """When each host of a wave finished its latest rollout attempt, ascending."""

    wave: str
    finished: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlatformCount:
    label: str  # the Windows caption and version, or UNKNOWN_PLATFORM
    profile: str  # legacy | modern | ""
    counts: tuple[tuple[HostStatus, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True, slots=True)
class ReasonCount:
    status: HostStatus
    stage: Stage | None
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class ChangeLine:
    """One value raorch touched on a host: what it was, what raorch made it."""

    item: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Identical change lists are kept once (a fleet has few of them): hosts point here."""

    index: int
    changes: tuple[ChangeLine, ...]
    hosts: int


@dataclass(frozen=True, slots=True)
class HostEntry:
    host: str
    wave: str
    platform: str
    profile: str
    status: HostStatus
    outcome: Outcome | None  # the rollout's own outcome
    stage: Stage | None
    reason: str | None  # the rollout's, or the rollback's when one took the host on
    attempts: int
    duration: float | None
    finished_at: float | None
    change_set: int | None  # ChangeSet.index, None: nothing written
    snapshot: bool  # the journal keeps the host's state from before


@dataclass(frozen=True, slots=True)
class ProblemHost:
    """A row of the refused / failed / conflict tables."""

    host: str
    wave: str
    platform: str
    status: HostStatus
    stage: Stage | None
    reason: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifySummary:
    at: float  # the latest verdict
    counts: tuple[tuple[Outcome, int], ...]
    not_compliant: tuple[ProblemHost, ...]


@dataclass(frozen=True, slots=True)
class ChangeReport:
    rollout_id: str
    inventory: str
    playbook: str
    playbook_lines: tuple[str, ...]  # what was set, in words ("" lines: unknown)
    playbook_note: str  # e.g. the playbook changed since the rollout
    created_at: float
    closed_at: float | None
    generated_at: float
    status: RolloutStatus
    status_detail: str
    accounts: tuple[str, ...]  # who ran its runs, first seen first
    runs: tuple[RunSummary, ...]
    waves: tuple[WaveSummary, ...]
    totals: tuple[tuple[HostStatus, int], ...]  # every status, zeros included
    wave_times: tuple[WaveTimes, ...]
    rollback_times: tuple[float, ...]  # hosts restored, ascending
    platforms: tuple[PlatformCount, ...]
    reasons: tuple[ReasonCount, ...]  # ranked, at most TOP_REASONS
    other_reasons: int  # hosts whose reason is not among them
    refused: tuple[ProblemHost, ...]
    failed: tuple[ProblemHost, ...]  # rollout failures and failed restores
    conflicts: tuple[ProblemHost, ...]
    hosts: tuple[HostEntry, ...]
    change_sets: tuple[ChangeSet, ...]
    verify: VerifySummary | None

    def total(self, status: HostStatus) -> int:
        return dict(self.totals).get(status, 0)

    @property
    def host_count(self) -> int:
        return len(self.hosts)


# ---------------------------------------------------------------- building it


def build_report(
    journal: JournalReader,
    rollout_id: str,
    *,
    generated_at: float,
    playbook_lines: Sequence[str] = (),
    playbook_note: str = "",
) -> ChangeReport:
    """The report of one rollout. ``playbook_lines``: the playbook in words (the CLI reads the
    playbook file, which the journal names but does not keep)."""
    row = journal.rollout(rollout_id)
    if row is None:
        raise KeyError(rollout_id)
    host_rows = journal.hosts(rollout_id)
    rollbacks = {r.host: r for r in journal.rollbacks(rollout_id)}
    platforms = _platforms(journal, rollout_id, host_rows)
    snapshot_hosts = journal.snapshot_hosts(rollout_id)
    change_sets, set_of = _change_sets(journal.applied_all(rollout_id))

    entries: list[HostEntry] = []
    for h in host_rows:
        platform = platforms.get(h.host)
        back = rollbacks.get(h.host)
        # A restored host keeps its rollout's reason; a conflict or a failed restore says why.
        own = back is None or back.outcome is Outcome.ROLLED_BACK
        entries.append(
            HostEntry(
                host=h.host,
                wave=h.wave,
                platform=_label(platform),
                profile="" if platform is None else platform.profile,
                status=_status(h, back),
                outcome=h.outcome,
                stage=h.stage if own or back is None else back.stage,
                reason=h.reason if own or back is None else back.reason,
                attempts=h.attempts,
                duration=h.duration,
                finished_at=h.finished_at,
                change_set=set_of.get(h.host),
                snapshot=h.host in snapshot_hosts,
            )
        )

    wave_rows = journal.waves(rollout_id)
    runs = journal.runs(rollout_id)
    reasons, other = _reasons(entries)
    standing, detail = _rollout_status(row, wave_rows, entries)
    return ChangeReport(
        rollout_id=row.id,
        inventory=row.inventory,
        playbook=row.playbook,
        playbook_lines=tuple(playbook_lines),
        playbook_note=playbook_note,
        created_at=row.created_at,
        closed_at=row.closed_at,
        generated_at=generated_at,
        status=standing,
        status_detail=detail,
        accounts=tuple(dict.fromkeys(r.account for r in runs if r.account)),
        runs=tuple(_run(r) for r in runs),
        waves=tuple(_wave(w, entries) for w in wave_rows),
        totals=_counts(e.status for e in entries),
        wave_times=tuple(
            WaveTimes(
                w.name,
                tuple(
                    sorted(
                        e.finished_at
                        for e in entries
                        if e.wave == w.name and e.finished_at is not None and e.outcome is not None
                    )
                ),
            )
            for w in wave_rows
        ),
        rollback_times=tuple(
            sorted(r.at for r in rollbacks.values() if r.outcome is Outcome.ROLLED_BACK)
        ),
        platforms=_platform_counts(entries),
        reasons=reasons,
        other_reasons=other,
        refused=tuple(_problem(e) for e in entries if e.status is HostStatus.REFUSED),
        failed=tuple(
            _problem(e)
            for e in entries
            if e.status in (HostStatus.FAILED, HostStatus.ROLLBACK_FAILED)
        ),
        conflicts=tuple(
            _problem(e, rollbacks[e.host].details)
            for e in entries
            if e.status is HostStatus.CONFLICT
        ),
        hosts=tuple(entries),
        change_sets=change_sets,
        verify=_verify(journal.verifications(rollout_id), {e.host: e for e in entries}),
    )


def _status(h: HostRow, back: RollbackRow | None) -> HostStatus:
    if back is not None:
        return {
            Outcome.ROLLED_BACK: HostStatus.ROLLED_BACK,
            Outcome.CONFLICT: HostStatus.CONFLICT,
        }.get(back.outcome, HostStatus.ROLLBACK_FAILED)
    if h.outcome is None:
        return HostStatus.IN_FLIGHT
    return {
        Outcome.CHANGED: HostStatus.CHANGED,
        Outcome.UNCHANGED: HostStatus.UNCHANGED,
        Outcome.SKIPPED: HostStatus.REFUSED,
    }.get(h.outcome, HostStatus.FAILED)


def _counts(statuses: Iterable[HostStatus]) -> tuple[tuple[HostStatus, int], ...]:
    counter = Counter(statuses)
    return tuple((s, counter.get(s, 0)) for s in STATUS_ORDER)


def _nonzero(
    counts: tuple[tuple[HostStatus, int], ...],
) -> tuple[tuple[HostStatus, int], ...]:
    return tuple((s, n) for s, n in counts if n)


def _run(r: RunRow) -> RunSummary:
    return RunSummary(r.kind, r.account, r.started_at, r.finished_at, r.forced, r.interrupted)


def _wave(w: WaveRow, entries: Sequence[HostEntry]) -> WaveSummary:
    mine = [e for e in entries if e.wave == w.name]
    return WaveSummary(
        name=w.name,
        state=w.state,
        hosts=len(mine),
        max_fail_percentage=w.max_fail_percentage,
        gate_held=w.gate_held,
        failure_percentage=w.failure_percentage,
        forced=w.forced,
        started_at=w.started_at,
        finished_at=w.finished_at,
        counts=_nonzero(_counts(e.status for e in mine)),
    )


def _rollout_status(
    row: RolloutRow, waves: Sequence[WaveRow], entries: Sequence[HostEntry]
) -> tuple[RolloutStatus, str]:
    if row.closed_at is not None:
        return RolloutStatus.ROLLED_BACK, "every host raorch changed was restored; closed"
    if waves and all(w.state is WaveState.DONE and w.gate_held for w in waves):
        return RolloutStatus.DONE, f"all {len(waves)} wave(s) done, every gate held"
    parts: list[str] = []
    for w in waves:
        if w.state is WaveState.HALTED:
            parts.append(f"wave {w.name} halted: its gate failed")
        elif w.state is WaveState.ROLLED_BACK:
            parts.append(f"wave {w.name} rolled back")
        elif w.state in (WaveState.RUNNING, WaveState.CANCELED, WaveState.PARTIAL):
            parts.append(f"wave {w.name} {w.state.value}")
    pending = [w.name for w in waves if w.state is WaveState.PENDING]
    if pending:
        parts.append("not run yet: " + ", ".join(pending))
    in_flight = sum(1 for e in entries if e.status is HostStatus.IN_FLIGHT)
    if in_flight:
        parts.append(f"{in_flight} host(s) without an outcome (in flight, or interrupted)")
    return RolloutStatus.OPEN, "; ".join(parts) or "open"


# ---------------------------------------------------------------- platforms


def _platforms(
    journal: JournalReader, rollout_id: str, hosts: Sequence[HostRow]
) -> dict[str, PlatformRow]:
    """Each host's Windows: recorded with its outcome; for a journal of an older raorch, from
    the facts of the snapshot (hosts refused by pre-flight have none there)."""
    found = journal.platforms(rollout_id)
    missing = {h.host for h in hosts} - set(found)
    if missing:
        for host, data in journal.snapshots(rollout_id).items():
            if host not in missing:
                continue
            try:
                facts = Snapshot.from_json(data).facts
            except SnapshotFormatError:
                continue
            if facts is None:
                continue
            profile = host_profile(facts)
            found[host] = PlatformRow(
                host,
                facts.caption.strip(),
                facts.os_version,
                profile.value if isinstance(profile, HostProfile) else "",
            )
    return found


def _label(platform: PlatformRow | None) -> str:
    if platform is None:
        return UNKNOWN_PLATFORM
    caption = platform.caption or "Windows (no caption)"
    return f"{caption} ({platform.os_version})" if platform.os_version else caption


def _platform_counts(entries: Sequence[HostEntry]) -> tuple[PlatformCount, ...]:
    groups: dict[tuple[str, str], list[HostStatus]] = {}
    for e in entries:
        groups.setdefault((e.profile, e.platform), []).append(e.status)
    # Legacy first, then modern, then unknown; inside, most hosts first.
    rank = {HostProfile.LEGACY.value: 0, HostProfile.MODERN.value: 1}
    ordered = sorted(groups.items(), key=lambda kv: (rank.get(kv[0][0], 2), -len(kv[1]), kv[0]))
    return tuple(
        PlatformCount(label, profile, _nonzero(_counts(statuses)))
        for (profile, label), statuses in ordered
    )


# ---------------------------------------------------------------- reasons and problems


def _reasons(entries: Sequence[HostEntry]) -> tuple[tuple[ReasonCount, ...], int]:
    counter: Counter[tuple[HostStatus, Stage | None, str]] = Counter(
        (e.status, e.stage, e.reason or "(no reason recorded)")
        for e in entries
        if e.status in PROBLEM_STATUSES
    )
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0][0].value, kv[0][2]))
    top = tuple(ReasonCount(s, stage, r, n) for (s, stage, r), n in ranked[:TOP_REASONS])
    return top, sum(n for _, n in ranked[TOP_REASONS:])


def _problem(e: HostEntry, details: tuple[str, ...] = ()) -> ProblemHost:
    return ProblemHost(
        e.host, e.wave, e.platform, e.status, e.stage, e.reason or "(no reason recorded)", details
    )


def _verify(rows: Sequence[VerifyRow], entries: dict[str, HostEntry]) -> VerifySummary | None:
    if not rows:
        return None
    counts = Counter(r.outcome for r in rows)
    order = (
        Outcome.COMPLIANT,
        Outcome.DRIFTED,
        Outcome.REFUSED,
        Outcome.UNREACHABLE,
        Outcome.FAILED,
    )
    listed = [*order, *sorted(set(counts) - set(order))]
    problems = tuple(
        ProblemHost(
            r.host,
            entries[r.host].wave if r.host in entries else "",
            entries[r.host].platform if r.host in entries else UNKNOWN_PLATFORM,
            HostStatus.FAILED,
            r.stage,
            f"{r.outcome.value}: {r.reason or '(no reason recorded)'}",
            r.details,
        )
        for r in rows
        if r.outcome is not Outcome.COMPLIANT
    )
    return VerifySummary(
        at=max(r.at for r in rows),
        counts=tuple((o, counts[o]) for o in listed if counts.get(o)),
        not_compliant=problems,
    )


# ---------------------------------------------------------------- before and after


def change_line(change: Change) -> ChangeLine:
    return ChangeLine(change.item, change.found, change.expected)


def _change_sets(applied: dict[str, str]) -> tuple[tuple[ChangeSet, ...], dict[str, int]]:
    """Identical change lists once, most common first; and each host's set."""
    lines_of: dict[str, tuple[ChangeLine, ...]] = {}
    for host, data in applied.items():
        try:
            changes = changes_from_json(data)
        except (ValueError, KeyError, TypeError):
            changes = ()
        if changes:
            lines_of[host] = tuple(change_line(c) for c in changes)
    popularity = Counter(lines_of.values())
    ordered = sorted(popularity.items(), key=lambda kv: -kv[1])
    index = {lines: i for i, (lines, _) in enumerate(ordered, 1)}
    sets = tuple(ChangeSet(index[lines], lines, n) for lines, n in ordered)
    return sets, {host: index[lines] for host, lines in lines_of.items()}
