"""The journal's queries and event handlers, written once for both backends: ``SqlJournal``,
the store of ``engine/store.py`` on a SQL database, which ``Journal`` (SQLite,
``engine/journal.py``) and ``PgJournal`` (PostgreSQL, ``engine/journal_pg.py``) complete with
what is theirs: the connection, its lock and transactions, the run and host locks, the
schema's versions, the errors in raorch's words.

Every statement is written once below (``Statements``), in SQLite's words: ``?`` for each
parameter, and ``{next_position[TABLE]}`` where a new row takes its place after the last of its
rollout (the rollout the statement's first parameter), ``{next_rollout_position}`` for a new
rollout; a backend renders them in its dialect (``engine/journal_dialect.py``) once, when it is
imported: nothing is built per call.

The journal's guarantees, kept here for both:

- **The first snapshot wins.** A snapshot is inserted against the host's primary key with
  ``ON CONFLICT DO NOTHING``, never after a read: a resumed run (or a second process committing
  one at the same moment, which waits for the first's commit) never replaces the original one.
- **Order is a value** (``position``): the inventory's waves, the order hosts first started, a
  verdict's latest... never the storage order.
- **One transaction per write** (per event: ``record``), committed before the call returns.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from raorch.engine.journal_dialect import Dialect
from raorch.engine.store import (
    ContentRow,
    HostRow,
    PlatformRow,
    RollbackRow,
    RolloutRow,
    RunRow,
    SiteRow,
    TimelineRow,
    VerifyRow,
    WaveRow,
    WorkerJournal,
)
from raorch.models.events import (
    RunKind,
)
from raorch.models.outcomes import Outcome, Stage, WaveState


class _NextPosition:
    """``{next_position[TABLE]}`` in a statement: the dialect's expression for that table."""

    def __init__(self, template: str) -> None:
        self._template = template

    def __getitem__(self, table: str) -> str:
        return self._template.format(table=table)


class Statements:
    """The journal's statements, in one dialect: each written once here (the class's
    attributes, in SQLite's words), rendered for a dialect when an instance is made."""

    # ------------------------------------------------------------ reads

    rollout = (
        "SELECT id, campaign, inventory, playbook, waves, created_at, closed_at, playbook_sha "
        "FROM rollouts WHERE id = ?"
    )
    rollouts = (
        "SELECT id, campaign, inventory, playbook, waves, created_at, closed_at, playbook_sha "
        "FROM rollouts ORDER BY created_at, position"
    )
    open_rollout_of = (
        "SELECT id FROM rollouts WHERE campaign = ? AND closed_at IS NULL "
        "ORDER BY created_at DESC, position DESC LIMIT 1"
    )
    latest_rollout_of = (
        "SELECT id FROM rollouts WHERE campaign = ? ORDER BY created_at DESC, position DESC LIMIT 1"
    )
    contents = (
        "SELECT rollout_id, revision, campaign, inventory_sha, playbook, playbook_sha, "
        "playbook_json, inventory_json, note, at FROM contents WHERE rollout_id = ? "
        "ORDER BY revision"
    )
    current_revision = "SELECT MAX(revision) FROM contents WHERE rollout_id = ?"
    host_revisions = (
        "SELECT host, revision FROM host_contents WHERE rollout_id = ? ORDER BY host, revision"
    )
    targets = "SELECT host, data FROM targets WHERE rollout_id = ?"
    has_hosts = "SELECT 1 FROM hosts WHERE rollout_id = ? LIMIT 1"
    unrestored = (
        "SELECT h.host FROM hosts h JOIN snapshots s "
        "ON s.rollout_id = h.rollout_id AND s.host = h.host "
        "WHERE h.rollout_id = ? AND (h.outcome IS NULL OR h.outcome IN (?, ?)) "
        "AND NOT EXISTS (SELECT 1 FROM rollbacks b WHERE b.rollout_id = h.rollout_id "
        "AND b.host = h.host AND b.outcome = ?) ORDER BY h.position"
    )
    waves = (
        "SELECT rollout_id, name, state, total, max_fail_percentage, forced, gate_held, "
        "failure_percentage, started_at, finished_at, size FROM waves "
        "WHERE rollout_id = ? ORDER BY position"
    )
    hosts = (
        "SELECT rollout_id, host, wave, outcome, stage, reason, changes, attempts, "
        "started_at, finished_at, duration FROM hosts WHERE rollout_id = ? ORDER BY position"
    )
    hosts_of_wave = (
        "SELECT rollout_id, host, wave, outcome, stage, reason, changes, attempts, "
        "started_at, finished_at, duration FROM hosts WHERE rollout_id = ? AND wave = ? "
        "ORDER BY position"
    )
    runs = (
        "SELECT seq, rollout_id, kind, forced, started_at, finished_at, interrupted, account "
        "FROM runs WHERE rollout_id = ? ORDER BY seq"
    )
    unfinished_runs = "SELECT DISTINCT rollout_id FROM runs WHERE finished_at IS NULL"
    timeline = (
        "SELECT kind, outcome, stage, reason, at, duration FROM timeline "
        "WHERE rollout_id = ? AND host = ? ORDER BY seq"
    )
    snapshot = "SELECT data FROM snapshots WHERE rollout_id = ? AND host = ?"
    snapshots = "SELECT host, data FROM snapshots WHERE rollout_id = ?"
    snapshot_taken_at = "SELECT taken_at FROM snapshots WHERE rollout_id = ? AND host = ?"
    snapshot_hosts = "SELECT host FROM snapshots WHERE rollout_id = ?"
    applied = "SELECT data FROM applied WHERE rollout_id = ? AND host = ?"
    applied_all = "SELECT host, data FROM applied WHERE rollout_id = ? ORDER BY position"
    rolled_back = "SELECT host FROM rollbacks WHERE rollout_id = ? AND outcome = ?"
    rollback_outcomes = "SELECT host, outcome FROM rollbacks WHERE rollout_id = ?"
    # One host's (a dialect that binds no list asks once per host), or a list's.
    rollback_details_of_host = (
        "SELECT host, details FROM rollbacks WHERE rollout_id = ? AND host = ?"
    )
    rollback_details_of_hosts = (
        "SELECT host, details FROM rollbacks WHERE rollout_id = ? AND host = ANY(?)"
    )
    # A host's verdict rows of ``rollbacks`` and ``verifications`` (the same columns).
    rollbacks = (
        "SELECT host, outcome, stage, reason, details, at FROM rollbacks "
        "WHERE rollout_id = ? ORDER BY at, position"
    )
    verifications = (
        "SELECT host, outcome, stage, reason, details, at FROM verifications "
        "WHERE rollout_id = ? ORDER BY position"
    )
    platforms = "SELECT host, caption, os_version, profile FROM platforms WHERE rollout_id = ?"
    sites = (
        "SELECT site, workers, queued, no_worker_since, at FROM sites "
        "WHERE rollout_id = ? ORDER BY position"
    )

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        tokens = {
            "next_position": _NextPosition(dialect.next_position),
            "next_rollout_position": dialect.next_rollout_position,
        }
        for name, text in vars(Statements).items():
            if isinstance(text, str) and not name.startswith("_"):
                setattr(self, name, text.replace("?", dialect.placeholder).format_map(tokens))


class SqlJournal(WorkerJournal):
    """The journal store on a SQL database (``engine/store.py`` has its two sides): its reads.
    A backend gives it ``_sql`` (the statements in its dialect) and ``_rows``/``_row`` (a
    read, on its connection)."""

    _sql: Statements

    @abstractmethod
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _row(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

    # ------------------------------------------------------------ rollouts

    def rollout(self, rollout_id: str) -> RolloutRow | None:
        row = self._row(self._sql.rollout, (rollout_id,))
        return None if row is None else _rollout_row(row)

    def rollouts(self) -> list[RolloutRow]:
        return [_rollout_row(r) for r in self._rows(self._sql.rollouts)]

    def find_rollout(self, campaign: str) -> RolloutRow | None:
        """The open rollout of this campaign, if any (reads only)."""
        row = self._row(self._sql.open_rollout_of, (campaign,))
        return None if row is None else self.rollout(str(row[0]))

    def latest_rollout_of(self, campaign: str) -> RolloutRow | None:
        """The most recent rollout of a campaign (inventory + playbook content), open or not."""
        row = self._row(self._sql.latest_rollout_of, (campaign,))
        return None if row is None else self.rollout(str(row[0]))

    def contents(self, rollout_id: str) -> list[ContentRow]:
        """The revisions of a rollout's content, oldest first (empty: begun by an older
        raorch, which kept the playbook's hash only)."""
        return [
            ContentRow(
                str(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                str(r[5]),
                str(r[6]),
                str(r[7]),
                str(r[8]),
                float(r[9]),
            )
            for r in self._rows(self._sql.contents, (rollout_id,))
        ]

    def current_revision(self, rollout_id: str) -> int | None:
        row = self._row(self._sql.current_revision, (rollout_id,))
        return None if row is None or row[0] is None else int(row[0])

    def host_revisions(self, rollout_id: str) -> dict[str, list[int]]:
        """host -> the revisions it was applied with, oldest first."""
        out: dict[str, list[int]] = {}
        for host, revision in self._rows(self._sql.host_revisions, (rollout_id,)):
            out.setdefault(str(host), []).append(int(revision))
        return out

    def targets(self, rollout_id: str) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self._rows(self._sql.targets, (rollout_id,))}

    def has_hosts(self, rollout_id: str) -> bool:
        """Whether any host ever started in this rollout."""
        return self._row(self._sql.has_hosts, (rollout_id,)) is not None

    def unrestored(self, rollout_id: str) -> list[str]:
        """Hosts raorch may have written to in this rollout (a snapshot was taken, and the
        outcome is changed, failed or none: killed in flight) that no rollback restored."""
        rows = self._rows(
            self._sql.unrestored,
            (
                rollout_id,
                Outcome.CHANGED.value,
                Outcome.FAILED.value,
                Outcome.ROLLED_BACK.value,
            ),
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------ waves, hosts, runs

    def waves(self, rollout_id: str) -> list[WaveRow]:
        return [
            WaveRow(
                r[0],
                r[1],
                WaveState(r[2]),
                r[3],
                r[4],
                bool(r[5]),
                None if r[6] is None else bool(r[6]),
                r[7],
                r[8],
                r[9],
                r[10],
            )
            for r in self._rows(self._sql.waves, (rollout_id,))
        ]

    def hosts(self, rollout_id: str, wave: str | None = None) -> list[HostRow]:
        if wave is None:
            rows = self._rows(self._sql.hosts, (rollout_id,))
        else:
            rows = self._rows(self._sql.hosts_of_wave, (rollout_id, wave))
        return [
            HostRow(
                r[0],
                r[1],
                r[2],
                None if r[3] is None else Outcome(r[3]),
                None if r[4] is None else Stage(r[4]),
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
            )
            for r in rows
        ]

    def runs(self, rollout_id: str) -> list[RunRow]:
        """The runs of a rollout, oldest first (read-only; ``raorch status`` reads it)."""
        return [
            RunRow(r[0], r[1], RunKind(r[2]), bool(r[3]), r[4], r[5], bool(r[6]), r[7] or "")
            for r in self._rows(self._sql.runs, (rollout_id,))
        ]

    def unfinished_runs(self) -> list[str]:
        """Rollouts whose last run has no end: running now, or its controller died."""
        return [str(r[0]) for r in self._rows(self._sql.unfinished_runs)]

    def timeline(self, rollout_id: str, host: str) -> list[TimelineRow]:
        return [
            TimelineRow(
                RunKind(r[0]),
                Outcome(r[1]),
                None if r[2] is None else Stage(r[2]),
                r[3],
                r[4],
                r[5],
            )
            for r in self._rows(self._sql.timeline, (rollout_id, host))
        ]

    # ------------------------------------------------------------ snapshots and changes

    def snapshot(self, rollout_id: str, host: str) -> str | None:
        row = self._row(self._sql.snapshot, (rollout_id, host))
        return None if row is None else str(row[0])

    def snapshots(self, rollout_id: str) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self._rows(self._sql.snapshots, (rollout_id,))}

    def snapshot_taken_at(self, rollout_id: str, host: str) -> float | None:
        row = self._row(self._sql.snapshot_taken_at, (rollout_id, host))
        return None if row is None else float(row[0])

    def snapshot_hosts(self, rollout_id: str) -> set[str]:
        return {str(r[0]) for r in self._rows(self._sql.snapshot_hosts, (rollout_id,))}

    def applied(self, rollout_id: str, host: str) -> str | None:
        row = self._row(self._sql.applied, (rollout_id, host))
        return None if row is None else str(row[0])

    def applied_all(self, rollout_id: str) -> dict[str, str]:
        """Every host's ``applied`` record (JSON), by host: one query for a whole report."""
        return {str(r[0]): str(r[1]) for r in self._rows(self._sql.applied_all, (rollout_id,))}

    # ------------------------------------------------------------ rollbacks

    def rolled_back(self, rollout_id: str) -> set[str]:
        """Hosts whose last rollback in this rollout restored them."""
        rows = self._rows(self._sql.rolled_back, (rollout_id, Outcome.ROLLED_BACK.value))
        return {str(r[0]) for r in rows}

    def rollback_outcomes(self, rollout_id: str) -> dict[str, Outcome]:
        return {
            str(r[0]): Outcome(r[1]) for r in self._rows(self._sql.rollback_outcomes, (rollout_id,))
        }

    def rollback_details(self, rollout_id: str, hosts: Iterable[str]) -> dict[str, list[str]]:
        """The recorded differences of hosts' last rollback (conflicts), by host."""
        names = list(hosts)
        if self._sql.dialect.binds_lists:
            rows = self._rows(self._sql.rollback_details_of_hosts, (rollout_id, names))
        else:
            found = (self._row(self._sql.rollback_details_of_host, (rollout_id, h)) for h in names)
            rows = [r for r in found if r is not None]
        details = {str(r[0]): r[1] for r in rows}
        return {h: json.loads(details[h]) if details.get(h) else [] for h in names}

    def rollbacks(self, rollout_id: str) -> list[RollbackRow]:
        """Each host's last rollback in this rollout, in the order they were restored."""
        return [RollbackRow(*_verdict(r)) for r in self._rows(self._sql.rollbacks, (rollout_id,))]

    # ------------------------------------------------------------ platforms, verify, sites

    def platforms(self, rollout_id: str) -> dict[str, PlatformRow]:
        rows = self._rows(self._sql.platforms, (rollout_id,))
        return {str(r[0]): PlatformRow(str(r[0]), r[1], r[2], r[3]) for r in rows}

    def verifications(self, rollout_id: str) -> list[VerifyRow]:
        rows = self._rows(self._sql.verifications, (rollout_id,))
        return [VerifyRow(*_verdict(r)) for r in rows]

    def sites(self, rollout_id: str) -> list[SiteRow]:
        return [
            SiteRow(str(r[0]), int(r[1]), int(r[2]), r[3], float(r[4]))
            for r in self._rows(self._sql.sites, (rollout_id,))
        ]

    # ------------------------------------------------------------ the event subscriber


def _rollout_row(r: Sequence[Any]) -> RolloutRow:
    return RolloutRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        tuple(json.loads(str(r[4]))),
        float(r[5]),
        None if r[6] is None else float(r[6]),
        str(r[7] or ""),
    )


def _verdict(
    r: Sequence[Any],
) -> tuple[str, Outcome, Stage | None, str | None, tuple[str, ...], float]:
    """A host's verdict row of ``rollbacks`` or ``verifications`` (the same columns)."""
    return (
        str(r[0]),
        Outcome(r[1]),
        None if r[2] is None else Stage(r[2]),
        r[3],
        tuple(json.loads(r[4])) if r[4] else (),
        float(r[5]),
    )
