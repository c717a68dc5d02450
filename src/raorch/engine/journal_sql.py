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
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from raorch.engine.journal_dialect import Dialect
from raorch.engine.store import (
    Content,
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
    operator_account,
)
from raorch.models.events import (
    Event,
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    SiteChecked,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Stage, WaveState


class Rows(Protocol):
    """What a statement returns (sqlite3's and psycopg's cursors)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """Where the statements of one transaction run: the backend's connection or cursor."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, args: Iterable[Sequence[Any]], /) -> object: ...


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
    # The hosts' in one query where the dialect binds a list (``binds_lists``: PostgreSQL's
    # ``= ANY``), else one host's at a time.
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

    # ------------------------------------------------------------ writes

    count_rollouts = "SELECT COUNT(*) FROM rollouts"
    insert_rollout = (
        "INSERT INTO rollouts (id, campaign, inventory, playbook, playbook_sha, waves, "
        "created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, {next_rollout_position})"
    )
    # A new rollout's waves, in the inventory's order.
    insert_wave = (
        "INSERT INTO waves (rollout_id, name, state, position) "
        "VALUES (?, ?, ?, {next_position[waves]})"
    )
    # A wave a new revision adds, after the rollout's (one it has already is kept as it is).
    add_wave = (
        "INSERT INTO waves (rollout_id, name, state, position) "
        "VALUES (?, ?, ?, {next_position[waves]}) ON CONFLICT (rollout_id, name) DO NOTHING"
    )
    revision_base = (
        "SELECT campaign, playbook, playbook_sha, waves, created_at FROM rollouts WHERE id = ?"
    )
    insert_content = (
        "INSERT INTO contents (rollout_id, revision, campaign, inventory_sha, playbook, "
        "playbook_sha, playbook_json, inventory_json, note, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    update_rollout_content = (
        "UPDATE rollouts SET campaign = ?, playbook = ?, playbook_sha = ?, waves = ? WHERE id = ?"
    )
    save_target = (
        "INSERT INTO targets (rollout_id, host, data) VALUES (?, ?, ?) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data"
    )
    close_rollout = "UPDATE rollouts SET closed_at = ? WHERE id = ?"
    reset_host = (
        "UPDATE hosts SET outcome = NULL, stage = NULL, reason = NULL "
        "WHERE rollout_id = ? AND host = ?"
    )
    # The first snapshot wins, by the primary key (never a read before the write).
    save_snapshot = (
        "INSERT INTO snapshots (rollout_id, host, taken_at, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (rollout_id, host) DO NOTHING"
    )
    save_host_content = (
        "INSERT INTO host_contents (rollout_id, host, revision) VALUES (?, ?, ?) "
        "ON CONFLICT (rollout_id, host, revision) DO NOTHING"
    )
    # A resumed run's record replaces the first one's, in its place.
    save_applied = (
        "INSERT INTO applied (rollout_id, host, recorded_at, data, position) "
        "VALUES (?, ?, ?, ?, {next_position[applied]}) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data, "
        "recorded_at = excluded.recorded_at"
    )
    save_platform = (
        "INSERT INTO platforms (rollout_id, host, caption, os_version, profile) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "caption = excluded.caption, os_version = excluded.os_version, "
        "profile = excluded.profile"
    )
    # The latest verdict replaces the one before and goes last (a new position).
    save_verification = (
        "INSERT INTO verifications (rollout_id, host, outcome, stage, reason, details, at, "
        "position) VALUES (?, ?, ?, ?, ?, ?, ?, {next_position[verifications]}) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET outcome = excluded.outcome, "
        "stage = excluded.stage, reason = excluded.reason, details = excluded.details, "
        "at = excluded.at, position = excluded.position"
    )
    verify_timeline_entry = (
        "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    interrupt_runs = (
        "UPDATE runs SET finished_at = ?, interrupted = TRUE "
        "WHERE rollout_id = ? AND finished_at IS NULL"
    )
    cancel_running_wave = (
        "UPDATE waves SET state = ?, finished_at = ? WHERE rollout_id = ? AND state = ?"
    )
    mark_forced = "UPDATE waves SET forced = TRUE WHERE rollout_id = ? AND name = ?"

    # ------------------------------------------------------------ the events' (handlers below)

    run_started = (
        "INSERT INTO runs (rollout_id, kind, forced, started_at, account) VALUES (?, ?, ?, ?, ?)"
    )
    wave_started = (
        "UPDATE waves SET state = ?, total = ?, max_fail_percentage = ?, "
        "started_at = COALESCE(started_at, ?), finished_at = NULL, "
        "size = COALESCE(?, size) WHERE rollout_id = ? AND name = ?"
    )
    forget_rollback = "DELETE FROM rollbacks WHERE rollout_id = ? AND host = ?"
    # A host started again keeps its place: the order is the order hosts first started.
    host_started = (
        "INSERT INTO hosts (rollout_id, host, wave, attempts, started_at, position) "
        "VALUES (?, ?, ?, 1, ?, {next_position[hosts]}) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "attempts = hosts.attempts + 1, started_at = excluded.started_at"
    )
    host_finished = (
        "UPDATE hosts SET outcome = ?, stage = ?, reason = ?, changes = ?, "
        "finished_at = ?, duration = ? WHERE rollout_id = ? AND host = ?"
    )
    # A host's last rollback replaces the one before, in its place.
    host_restored = (
        "INSERT INTO rollbacks (rollout_id, host, outcome, stage, reason, details, at, position) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, {next_position[rollbacks]}) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "outcome = excluded.outcome, stage = excluded.stage, reason = excluded.reason, "
        "details = excluded.details, at = excluded.at"
    )
    timeline_entry = (
        "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at, duration) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    gate_evaluated = (
        "UPDATE waves SET gate_held = ?, failure_percentage = ? WHERE rollout_id = ? AND name = ?"
    )
    wave_finished = "UPDATE waves SET state = ?, finished_at = ? WHERE rollout_id = ? AND name = ?"
    run_finished = (
        "UPDATE runs SET finished_at = ?, interrupted = ? WHERE seq = "
        "(SELECT MAX(seq) FROM runs WHERE rollout_id = ?)"
    )
    # A site's last figures replace the ones before; its place is where it was first seen.
    site_checked = (
        "INSERT INTO sites (rollout_id, site, workers, queued, no_worker_since, at, position) "
        "VALUES (?, ?, ?, ?, ?, ?, {next_position[sites]}) "
        "ON CONFLICT (rollout_id, site) DO UPDATE SET workers = excluded.workers, "
        "queued = excluded.queued, no_worker_since = excluded.no_worker_since, "
        "at = excluded.at"
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
    """The journal store on a SQL database (``engine/store.py`` has its two sides): every read,
    write and event handler. A backend gives it ``_sql`` (the statements in its dialect) and
    what is its own: ``_rows``/``_row`` (a read), ``_tx`` (a write: one transaction, committed
    when the block ends), ``_lock_rollouts``, the locks and ``location``/``close``."""

    _sql: Statements

    @abstractmethod
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _row(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Transaction]: ...

    @abstractmethod
    def _lock_rollouts(self, db: Transaction) -> None:
        """Make rollouts one at a time, from here to the end of the transaction ``db``: two
        controllers opening the same campaign at once make one rollout."""

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

    def open_rollout(
        self,
        campaign: str,
        inventory: str,
        playbook: str,
        waves: tuple[str, ...],
        playbook_sha: str = "",
        content: Content | None = None,
    ) -> RolloutRow:
        """The open rollout of this campaign, or a new one (whose revision 1 is ``content``)."""
        sql = self._sql
        with self._tx() as db:
            self._lock_rollouts(db)
            row = db.execute(sql.open_rollout_of, (campaign,)).fetchone()
            if row is None:
                now = time.time()
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
                count = int(db.execute(sql.count_rollouts).fetchone()[0])
                rollout_id = f"{stamp}-{campaign[:8]}-{count + 1}"
                db.execute(
                    sql.insert_rollout,
                    (
                        rollout_id,
                        campaign,
                        inventory,
                        playbook,
                        playbook_sha,
                        json.dumps(list(waves)),
                        now,
                    ),
                )
                for name in waves:  # the inventory's order
                    db.execute(sql.insert_wave, (rollout_id, name, WaveState.PENDING.value))
                if content is not None:
                    _insert_content(db, sql, rollout_id, 1, content, "began", now)
            else:
                rollout_id = str(row[0])
        found = self.rollout(rollout_id)
        assert found is not None
        return found

    def add_revision(
        self, rollout_id: str, content: Content, waves: tuple[str, ...], note: str
    ) -> int:
        """Go on with an open rollout with changed content: record it as the next revision,
        make it the rollout's current content (its campaign finds the rollout from now on) and
        add the waves it names that the rollout did not have. Returns the new revision."""
        now = time.time()
        sql = self._sql
        with self._tx() as db:
            self._lock_rollouts(db)
            row = db.execute(sql.revision_base, (rollout_id,)).fetchone()
            if row is None:
                raise KeyError(rollout_id)
            last = db.execute(sql.current_revision, (rollout_id,)).fetchone()[0]
            if last is None:
                # Begun by an older raorch (or opened without a content): its first content is
                # known by its hashes only.
                first = Content(str(row[0]), "", str(row[1]), str(row[2] or ""), "", "")
                _insert_content(db, sql, rollout_id, 1, first, "began", float(row[4]))
                last = 1
            revision = int(last) + 1
            _insert_content(db, sql, rollout_id, revision, content, note, now)
            known = list(json.loads(str(row[3])))
            added = [w for w in waves if w not in known]
            for name in added:
                db.execute(sql.add_wave, (rollout_id, name, WaveState.PENDING.value))
            db.execute(
                sql.update_rollout_content,
                (
                    content.campaign,
                    content.playbook,
                    content.playbook_sha,
                    json.dumps(known + added),
                    rollout_id,
                ),
            )
        return revision

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

    def save_targets(self, rollout_id: str, targets: dict[str, str]) -> None:
        """How each host is reached (JSON), the latest wins."""
        with self._tx() as db:
            db.executemany(self._sql.save_target, [(rollout_id, h, d) for h, d in targets.items()])

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

    def close_rollout(self, rollout_id: str) -> None:
        with self._tx() as db:
            db.execute(self._sql.close_rollout, (time.time(), rollout_id))

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

    def reset_hosts(self, rollout_id: str, hosts: list[str]) -> None:
        """Forget the outcome of hosts to run again (``--limit @failed``)."""
        with self._tx() as db:
            db.executemany(self._sql.reset_host, [(rollout_id, h) for h in hosts])

    def runs(self, rollout_id: str) -> list[RunRow]:
        """The runs of a rollout, oldest first (read-only; ``raorch status`` reads it)."""
        return [
            RunRow(r[0], r[1], RunKind(r[2]), bool(r[3]), r[4], r[5], bool(r[6]), r[7] or "")
            for r in self._rows(self._sql.runs, (rollout_id,))
        ]

    def unfinished_runs(self) -> list[str]:
        """Rollouts whose last run has no end: running now, or its controller died."""
        return [str(r[0]) for r in self._rows(self._sql.unfinished_runs)]

    def mark_interrupted(self, rollout_id: str, at: float) -> None:
        """Record that the runs of a rollout without an end ended (their controller died:
        SIGKILL, a crash, a power loss): they end ``at`` as interrupted, and a wave left
        running is canceled, as Ctrl-C leaves it (running the same command again resumes).
        Called only when no process holds the rollout's run lock (``close_interrupted``)."""
        with self._tx() as db:
            db.execute(self._sql.interrupt_runs, (at, rollout_id))
            db.execute(
                self._sql.cancel_running_wave,
                (WaveState.CANCELED.value, at, rollout_id, WaveState.RUNNING.value),
            )

    def mark_forced(self, rollout_id: str, wave: str) -> None:
        with self._tx() as db:
            db.execute(self._sql.mark_forced, (rollout_id, wave))

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

    def save_snapshot(
        self, rollout_id: str, host: str, data: str, revision: int | None = None
    ) -> None:
        """Commit a host's snapshot; the first one committed wins (never replaced on resume;
        of two processes committing one at once, the second waits for the first's commit,
        then does nothing). ``revision``: the content the host is about to be applied with,
        recorded in the same transaction (before any write), so that rollback knows what
        raorch may have written."""
        with self._tx() as db:
            db.execute(self._sql.save_snapshot, (rollout_id, host, time.time(), data))
            if revision is not None:
                db.execute(self._sql.save_host_content, (rollout_id, host, revision))

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

    def save_applied(self, rollout_id: str, host: str, data: str) -> None:
        """What raorch changed on a host (a resumed run merges into the first record)."""
        with self._tx() as db:
            db.execute(self._sql.save_applied, (rollout_id, host, time.time(), data))

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
        rows = self._rows(self._sql.rollback_outcomes, (rollout_id,))
        return {str(r[0]): Outcome(r[1]) for r in rows}

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

    def save_platform(
        self, rollout_id: str, host: str, caption: str, os_version: str, profile: str
    ) -> None:
        """The Windows a host reported in its latest rollout run."""
        with self._tx() as db:
            db.execute(self._sql.save_platform, (rollout_id, host, caption, os_version, profile))

    def platforms(self, rollout_id: str) -> dict[str, PlatformRow]:
        rows = self._rows(self._sql.platforms, (rollout_id,))
        return {str(r[0]): PlatformRow(str(r[0]), r[1], r[2], r[3]) for r in rows}

    def record_verify(self, rollout_id: str, rows: Iterable[VerifyRow]) -> None:
        """A ``raorch verify`` of this rollout's inventory and playbook: each host's verdict
        replaces its previous one, and goes on the host's timeline."""
        sql = self._sql
        with self._tx() as db:
            for row in rows:
                stage = None if row.stage is None else row.stage.value
                db.execute(
                    sql.save_verification,
                    (
                        rollout_id,
                        row.host,
                        row.outcome.value,
                        stage,
                        row.reason,
                        json.dumps(list(row.details), ensure_ascii=False),
                        row.at,
                    ),
                )
                db.execute(
                    sql.verify_timeline_entry,
                    (
                        rollout_id,
                        row.host,
                        RunKind.VERIFY.value,
                        row.outcome.value,
                        stage,
                        row.reason,
                        row.at,
                    ),
                )

    def verifications(self, rollout_id: str) -> list[VerifyRow]:
        rows = self._rows(self._sql.verifications, (rollout_id,))
        return [VerifyRow(*_verdict(r)) for r in rows]

    def sites(self, rollout_id: str) -> list[SiteRow]:
        return [
            SiteRow(str(r[0]), int(r[1]), int(r[2]), r[3], float(r[4]))
            for r in self._rows(self._sql.sites, (rollout_id,))
        ]

    # ------------------------------------------------------------ the event subscriber

    def record(self, event: Event) -> None:
        """Subscriber: make an engine event durable, in one transaction. Each kind of event
        has its handlers (``_HANDLERS``): rollout events update the rollout's waves and hosts,
        rollback events the ``rollbacks`` table, both the timeline."""
        handlers = _HANDLERS.get((type(event), event.kind), ())
        if not handlers:
            return
        sql = self._sql
        with self._tx() as db:
            for handle in handlers:
                handle(db, sql, event)


def _insert_content(
    db: Transaction,
    sql: Statements,
    rollout_id: str,
    revision: int,
    content: Content,
    note: str,
    at: float,
) -> None:
    db.execute(
        sql.insert_content,
        (
            rollout_id,
            revision,
            content.campaign,
            content.inventory_sha,
            content.playbook,
            content.playbook_sha,
            content.playbook_json,
            content.inventory_json,
            note,
            at,
        ),
    )


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


# ---------------------------------------------------------------- the events, one handler each


def _run_started(db: Transaction, sql: Statements, event: RolloutStarted) -> None:
    # The account is this process's: the journal is written by the process that runs the
    # command.
    db.execute(
        sql.run_started,
        (event.rollout_id, event.kind.value, event.forced, event.at, operator_account()),
    )


def _wave_started(db: Transaction, sql: Statements, event: WaveStarted) -> None:
    db.execute(
        sql.wave_started,
        (
            WaveState.RUNNING.value,
            event.total_hosts,
            event.max_fail_percentage,
            event.at,
            event.wave_hosts,
            event.rollout_id,
            event.wave,
        ),
    )


def _host_started(db: Transaction, sql: Statements, event: HostStarted) -> None:
    # Applied again after a rollback: a later rollback must take it on again.
    db.execute(sql.forget_rollback, (event.rollout_id, event.host))
    db.execute(sql.host_started, (event.rollout_id, event.host, event.wave, event.at))


def _host_finished(db: Transaction, sql: Statements, event: HostFinished) -> None:
    db.execute(
        sql.host_finished,
        (
            event.outcome.value,
            None if event.reason is None else event.reason.stage.value,
            None if event.reason is None else event.reason.message,
            event.changes,
            event.at,
            event.duration,
            event.rollout_id,
            event.host,
        ),
    )


def _host_restored(db: Transaction, sql: Statements, event: HostFinished) -> None:
    """A host's rollback: its last one replaces the one before (``rollbacks``)."""
    db.execute(
        sql.host_restored,
        (
            event.rollout_id,
            event.host,
            event.outcome.value,
            None if event.reason is None else event.reason.stage.value,
            None if event.reason is None else event.reason.message,
            json.dumps(list(event.details)),
            event.at,
        ),
    )


def _timeline_entry(db: Transaction, sql: Statements, event: HostFinished) -> None:
    """Every outcome a host had, whatever the run (``raorch show --host``)."""
    db.execute(
        sql.timeline_entry,
        (
            event.rollout_id,
            event.host,
            event.kind.value,
            event.outcome.value,
            None if event.reason is None else event.reason.stage.value,
            None if event.reason is None else event.reason.message,
            event.at,
            event.duration,
        ),
    )


def _gate_evaluated(db: Transaction, sql: Statements, event: GateEvaluated) -> None:
    db.execute(
        sql.gate_evaluated, (event.held, event.failure_percentage, event.rollout_id, event.wave)
    )


def _wave_finished(db: Transaction, sql: Statements, event: WaveFinished) -> None:
    db.execute(sql.wave_finished, (event.state.value, event.at, event.rollout_id, event.wave))


def _wave_rolled_back(db: Transaction, sql: Statements, event: WaveFinished) -> None:
    """A rollback's wave: rolled back once it restored a host (a rollback that restored none
    leaves the wave as the rollout left it)."""
    if event.counts.get(Outcome.ROLLED_BACK):
        db.execute(
            sql.wave_finished,
            (WaveState.ROLLED_BACK.value, event.at, event.rollout_id, event.wave),
        )


def _run_finished(db: Transaction, sql: Statements, event: RolloutFinished) -> None:
    db.execute(sql.run_finished, (event.at, event.interrupted, event.rollout_id))


def _site_checked(db: Transaction, sql: Statements, event: SiteChecked) -> None:
    db.execute(
        sql.site_checked,
        (
            event.rollout_id,
            event.site,
            event.workers,
            event.queued,
            event.no_worker_since,
            event.at,
        ),
    )


_Handler = Callable[[Transaction, Statements, Any], None]
_E = TypeVar("_E", bound=Event)


def _on(
    event_type: type[_E],
    kinds: Iterable[RunKind],
    *handlers: Callable[[Transaction, Statements, _E], None],
) -> dict[tuple[type, RunKind], tuple[_Handler, ...]]:
    return {(event_type, kind): handlers for kind in kinds}


# (the event's type, its kind) -> what the journal does with it, in order, in one transaction.
# An event not named here is not recorded (a rollback's hosts starting, a plan's events...).
_HANDLERS: dict[tuple[type, RunKind], tuple[_Handler, ...]] = {
    **_on(RolloutStarted, RunKind, _run_started),
    **_on(RolloutFinished, RunKind, _run_finished),
    **_on(WaveStarted, [RunKind.ROLLOUT], _wave_started),
    **_on(HostStarted, [RunKind.ROLLOUT], _host_started),
    **_on(HostFinished, [RunKind.ROLLOUT], _host_finished, _timeline_entry),
    **_on(HostFinished, [RunKind.ROLLBACK], _host_restored, _timeline_entry),
    **_on(HostFinished, [RunKind.VERIFY, RunKind.PLAN], _timeline_entry),
    **_on(GateEvaluated, [RunKind.ROLLOUT], _gate_evaluated),
    **_on(WaveFinished, [RunKind.ROLLOUT], _wave_finished),
    **_on(WaveFinished, [RunKind.ROLLBACK], _wave_rolled_back),
    **_on(SiteChecked, [RunKind.ROLLOUT, RunKind.ROLLBACK], _site_checked),
}
