"""The journal: an embedded SQLite store of rollouts, waves, host outcomes and snapshots.

Nothing is lost: every host outcome is committed when the host finishes, and a host's snapshot
is committed (from the worker thread, before the first write to that host) with INSERT OR
IGNORE, so a resumed run never replaces the ORIGINAL snapshot with one of a half-applied state.
WAL mode: readers (``raorch status`` in another terminal) never block the writer, and a commit
survives the process being killed (SIGKILL) at any moment.

The store lives in ``$RAORCH_HOME`` (default ``./.raorch``): the directory is 0700 and the
files 0600, because snapshots describe the security settings of every host. Its schema has a
version (``engine/journal_schema.py``): a journal of an older raorch is migrated when opened,
one of a newer raorch refused. Order is a value (``position``), never the rowid.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from raorch.engine.journal_schema import migrate
from raorch.engine.lock import is_running, run_lock
from raorch.engine.paths import private_dir, private_file, state_home
from raorch.engine.store import (
    Content,
    ContentRow,
    HostRow,
    JournalStore,
    PlatformRow,
    RollbackRow,
    RolloutRow,
    RunRow,
    TimelineRow,
    VerifyRow,
    WaveRow,
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
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Stage, WaveState

JOURNAL_FILE = "state.db"  # in the state directory ($RAORCH_HOME)

# A new row's place in its rollout: after the last (journal_schema.POSITIONED). An upsert keeps
# the place of the row it updates. ``table`` is always this module's constant, never input.
_NEXT_POSITION = "(SELECT COALESCE(MAX(position), 0) + 1 FROM {table} WHERE rollout_id = ?)"


class Journal(JournalStore):
    """The journal store in one SQLite database (``engine/store.py`` has its two sides).
    Thread-safe: one connection behind a lock (the engine writes from the event loop, and
    snapshots from worker threads). The run lock is a ``flock`` beside it (``engine/lock.py``)."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        existed = path.exists()
        if not existed:
            private_file(path)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (WAL is fsynced at checkpoints only, which
        # matters for power loss, not for SIGKILL).
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            # A new journal, or one of an older raorch, is brought to this raorch's version; a
            # newer raorch's is refused (engine/journal_schema.py).
            migrate(self._db, path)
        except BaseException:
            self._db.close()
            raise
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    @classmethod
    def open_default(cls) -> Journal:
        return cls(private_dir(state_home()) / JOURNAL_FILE)

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ the run lock

    def lock(self, rollout_id: str) -> AbstractContextManager[None]:
        return run_lock(self.path.parent, rollout_id)

    def is_running(self, rollout_id: str) -> bool:
        return is_running(self.path.parent, rollout_id)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ rollouts

    def find_rollout(self, campaign: str) -> RolloutRow | None:
        """The open rollout of this campaign, if any (reads only)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM rollouts WHERE campaign = ? AND closed_at IS NULL "
                "ORDER BY created_at DESC, position DESC LIMIT 1",
                (campaign,),
            ).fetchone()
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
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM rollouts WHERE campaign = ? AND closed_at IS NULL "
                "ORDER BY created_at DESC, position DESC LIMIT 1",
                (campaign,),
            ).fetchone()
            if row is None:
                now = time.time()
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
                n = db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]
                rollout_id = f"{stamp}-{campaign[:8]}-{n + 1}"
                db.execute(
                    "INSERT INTO rollouts (id, campaign, inventory, playbook, playbook_sha, "
                    "waves, created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "(SELECT COALESCE(MAX(position), 0) + 1 FROM rollouts))",
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
                for position, name in enumerate(waves, 1):  # the inventory's order
                    db.execute(
                        "INSERT INTO waves (rollout_id, name, state, position) VALUES (?, ?, ?, ?)",
                        (rollout_id, name, WaveState.PENDING.value, position),
                    )
                if content is not None:
                    _insert_content(db, rollout_id, 1, content, "began", now)
            else:
                rollout_id = row[0]
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
        with self._tx() as db:
            row = db.execute(
                "SELECT campaign, playbook, playbook_sha, waves, created_at FROM rollouts "
                "WHERE id = ?",
                (rollout_id,),
            ).fetchone()
            if row is None:
                raise KeyError(rollout_id)
            last = db.execute(
                "SELECT MAX(revision) FROM contents WHERE rollout_id = ?", (rollout_id,)
            ).fetchone()[0]
            if last is None:
                # Begun by an older raorch: its first content is known by its hashes only.
                first = Content(str(row[0]), "", str(row[1]), str(row[2] or ""), "", "")
                _insert_content(db, rollout_id, 1, first, "began", float(row[4]))
                last = 1
            revision = int(last) + 1
            _insert_content(db, rollout_id, revision, content, note, now)
            known = list(json.loads(str(row[3])))
            added = [w for w in waves if w not in known]
            for name in added:
                db.execute(
                    "INSERT OR IGNORE INTO waves (rollout_id, name, state, position) "
                    f"VALUES (?, ?, ?, {_NEXT_POSITION.format(table='waves')})",
                    (rollout_id, name, WaveState.PENDING.value, rollout_id),
                )
            db.execute(
                "UPDATE rollouts SET campaign = ?, playbook = ?, playbook_sha = ?, waves = ? "
                "WHERE id = ?",
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
        with self._lock:
            rows = self._db.execute(
                "SELECT rollout_id, revision, campaign, inventory_sha, playbook, playbook_sha, "
                "playbook_json, inventory_json, note, at FROM contents WHERE rollout_id = ? "
                "ORDER BY revision",
                (rollout_id,),
            ).fetchall()
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
            for r in rows
        ]

    def current_revision(self, rollout_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(revision) FROM contents WHERE rollout_id = ?", (rollout_id,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def host_revisions(self, rollout_id: str) -> dict[str, list[int]]:
        """host -> the revisions it was applied with, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host, revision FROM host_contents WHERE rollout_id = ? "
                "ORDER BY host, revision",
                (rollout_id,),
            ).fetchall()
        out: dict[str, list[int]] = {}
        for host, revision in rows:
            out.setdefault(str(host), []).append(int(revision))
        return out

    def save_targets(self, rollout_id: str, targets: dict[str, str]) -> None:
        """How each host is reached (JSON), the latest wins."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO targets (rollout_id, host, data) VALUES (?, ?, ?) "
                "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data",
                [(rollout_id, h, d) for h, d in targets.items()],
            )

    def targets(self, rollout_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT host, data FROM targets WHERE rollout_id = ?", (rollout_id,)
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def has_hosts(self, rollout_id: str) -> bool:
        """Whether any host ever started in this rollout."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM hosts WHERE rollout_id = ? LIMIT 1", (rollout_id,)
            ).fetchone()
        return row is not None

    def unrestored(self, rollout_id: str) -> list[str]:
        """Hosts raorch may have written to in this rollout (a snapshot was taken, and the
        outcome is changed, failed or none: killed in flight) that no rollback restored."""
        with self._lock:
            rows = self._db.execute(
                "SELECT h.host FROM hosts h JOIN snapshots s "
                "ON s.rollout_id = h.rollout_id AND s.host = h.host "
                "WHERE h.rollout_id = ? AND (h.outcome IS NULL OR h.outcome IN (?, ?)) "
                "AND NOT EXISTS (SELECT 1 FROM rollbacks b WHERE b.rollout_id = h.rollout_id "
                "AND b.host = h.host AND b.outcome = ?) ORDER BY h.position",
                (
                    rollout_id,
                    Outcome.CHANGED.value,
                    Outcome.FAILED.value,
                    Outcome.ROLLED_BACK.value,
                ),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def close_rollout(self, rollout_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE rollouts SET closed_at = ? WHERE id = ?", (time.time(), rollout_id))

    def rollout(self, rollout_id: str) -> RolloutRow | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, campaign, inventory, playbook, waves, created_at, closed_at, "
                "playbook_sha "
                "FROM rollouts WHERE id = ?",
                (rollout_id,),
            ).fetchone()
        return None if row is None else _rollout_row(row)

    def rollouts(self) -> list[RolloutRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, campaign, inventory, playbook, waves, created_at, closed_at, "
                "playbook_sha "
                "FROM rollouts ORDER BY created_at, position"
            ).fetchall()
        return [_rollout_row(r) for r in rows]

    # ------------------------------------------------------------ waves and hosts

    def waves(self, rollout_id: str) -> list[WaveRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rollout_id, name, state, total, max_fail_percentage, forced, gate_held, "
                "failure_percentage, started_at, finished_at, size FROM waves "
                "WHERE rollout_id = ? ORDER BY position",
                (rollout_id,),
            ).fetchall()
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
            for r in rows
        ]

    def hosts(self, rollout_id: str, wave: str | None = None) -> list[HostRow]:
        sql = (
            "SELECT rollout_id, host, wave, outcome, stage, reason, changes, attempts, "
            "started_at, finished_at, duration FROM hosts WHERE rollout_id = ?"
        )
        args: tuple[str, ...] = (rollout_id,)
        if wave is not None:
            sql += " AND wave = ?"
            args = (rollout_id, wave)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY position", args).fetchall()
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
            db.executemany(
                "UPDATE hosts SET outcome = NULL, stage = NULL, reason = NULL "
                "WHERE rollout_id = ? AND host = ?",
                [(rollout_id, h) for h in hosts],
            )

    # ------------------------------------------------------------ snapshots and changes

    def save_snapshot(
        self, rollout_id: str, host: str, data: str, revision: int | None = None
    ) -> None:
        """Commit a host's snapshot; the first one taken wins (never replaced on resume).
        ``revision``: the content the host is about to be applied with, recorded in the same
        transaction (before any write), so that rollback knows what raorch may have written."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO snapshots (rollout_id, host, taken_at, data) "
                "VALUES (?, ?, ?, ?)",
                (rollout_id, host, time.time(), data),
            )
            if revision is not None:
                db.execute(
                    "INSERT OR IGNORE INTO host_contents (rollout_id, host, revision) "
                    "VALUES (?, ?, ?)",
                    (rollout_id, host, revision),
                )

    def snapshot(self, rollout_id: str, host: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM snapshots WHERE rollout_id = ? AND host = ?", (rollout_id, host)
            ).fetchone()
        return None if row is None else str(row[0])

    def snapshots(self, rollout_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT host, data FROM snapshots WHERE rollout_id = ?", (rollout_id,)
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def snapshot_taken_at(self, rollout_id: str, host: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT taken_at FROM snapshots WHERE rollout_id = ? AND host = ?",
                (rollout_id, host),
            ).fetchone()
        return None if row is None else float(row[0])

    def snapshot_hosts(self, rollout_id: str) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT host FROM snapshots WHERE rollout_id = ?", (rollout_id,)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def rolled_back(self, rollout_id: str) -> set[str]:
        """Hosts whose last rollback in this rollout restored them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host FROM rollbacks WHERE rollout_id = ? AND outcome = ?",
                (rollout_id, Outcome.ROLLED_BACK.value),
            ).fetchall()
        return {str(r[0]) for r in rows}

    def rollback_outcomes(self, rollout_id: str) -> dict[str, Outcome]:
        with self._lock:
            rows = self._db.execute(
                "SELECT host, outcome FROM rollbacks WHERE rollout_id = ?", (rollout_id,)
            ).fetchall()
        return {str(r[0]): Outcome(r[1]) for r in rows}

    def rollback_details(self, rollout_id: str, hosts: Iterable[str]) -> dict[str, list[str]]:
        """The recorded differences of hosts' last rollback (conflicts), by host."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for host in hosts:
                row = self._db.execute(
                    "SELECT details FROM rollbacks WHERE rollout_id = ? AND host = ?",
                    (rollout_id, host),
                ).fetchone()
                out[host] = json.loads(row[0]) if row and row[0] else []
        return out

    def save_applied(self, rollout_id: str, host: str, data: str) -> None:
        """What raorch changed on a host (a resumed run merges into the first record)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO applied (rollout_id, host, recorded_at, data, position) "
                f"VALUES (?, ?, ?, ?, {_NEXT_POSITION.format(table='applied')}) "
                "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data, "
                "recorded_at = excluded.recorded_at",
                (rollout_id, host, time.time(), data, rollout_id),
            )

    def applied(self, rollout_id: str, host: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM applied WHERE rollout_id = ? AND host = ?", (rollout_id, host)
            ).fetchone()
        return None if row is None else str(row[0])

    def timeline(self, rollout_id: str, host: str) -> list[TimelineRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, outcome, stage, reason, at, duration FROM timeline "
                "WHERE rollout_id = ? AND host = ? ORDER BY seq",
                (rollout_id, host),
            ).fetchall()
        return [
            TimelineRow(
                RunKind(r[0]),
                Outcome(r[1]),
                None if r[2] is None else Stage(r[2]),
                r[3],
                r[4],
                r[5],
            )
            for r in rows
        ]

    def runs(self, rollout_id: str) -> list[RunRow]:
        """The runs of a rollout, oldest first (read-only; ``raorch status`` reads it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, rollout_id, kind, forced, started_at, finished_at, interrupted, "
                "account FROM runs WHERE rollout_id = ? ORDER BY seq",
                (rollout_id,),
            ).fetchall()
        return [
            RunRow(r[0], r[1], RunKind(r[2]), bool(r[3]), r[4], r[5], bool(r[6]), r[7] or "")
            for r in rows
        ]

    def latest_rollout_of(self, campaign: str) -> RolloutRow | None:
        """The most recent rollout of a campaign (inventory + playbook content), open or not."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM rollouts WHERE campaign = ? "
                "ORDER BY created_at DESC, position DESC LIMIT 1",
                (campaign,),
            ).fetchone()
        return None if row is None else self.rollout(str(row[0]))

    def rollbacks(self, rollout_id: str) -> list[RollbackRow]:
        """Each host's last rollback in this rollout, in the order they were restored."""
        return [
            RollbackRow(*row) for row in self._verdicts("rollbacks", rollout_id, "at, position")
        ]

    def applied_all(self, rollout_id: str) -> dict[str, str]:
        """Every host's ``applied`` record (JSON), by host: one query for a whole report."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host, data FROM applied WHERE rollout_id = ? ORDER BY position",
                (rollout_id,),
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # ------------------------------------------------------------ platforms and verify

    def save_platform(
        self, rollout_id: str, host: str, caption: str, os_version: str, profile: str
    ) -> None:
        """The Windows a host reported in its latest rollout run."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO platforms (rollout_id, host, caption, os_version, "
                "profile) VALUES (?, ?, ?, ?, ?)",
                (rollout_id, host, caption, os_version, profile),
            )

    def platforms(self, rollout_id: str) -> dict[str, PlatformRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT host, caption, os_version, profile FROM platforms WHERE rollout_id = ?",
                (rollout_id,),
            ).fetchall()
        return {str(r[0]): PlatformRow(str(r[0]), r[1], r[2], r[3]) for r in rows}

    def record_verify(self, rollout_id: str, rows: Iterable[VerifyRow]) -> None:
        """A ``raorch verify`` of this rollout's inventory and playbook: each host's verdict
        replaces its previous one, and goes on the host's timeline."""
        with self._tx() as db:
            for row in rows:
                stage = None if row.stage is None else row.stage.value
                db.execute(
                    # REPLACE: the latest verdict goes last (a new position, as a new row).
                    "INSERT OR REPLACE INTO verifications (rollout_id, host, outcome, stage, "
                    "reason, details, at, position) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    f"{_NEXT_POSITION.format(table='verifications')})",
                    (
                        rollout_id,
                        row.host,
                        row.outcome.value,
                        stage,
                        row.reason,
                        json.dumps(list(row.details), ensure_ascii=False),
                        row.at,
                        rollout_id,
                    ),
                )
                db.execute(
                    "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        return [VerifyRow(*row) for row in self._verdicts("verifications", rollout_id, "position")]

    def _verdicts(
        self, table: str, rollout_id: str, order: str
    ) -> list[tuple[str, Outcome, Stage | None, str | None, tuple[str, ...], float]]:
        """A host's verdict rows of ``rollbacks`` or ``verifications`` (the same columns);
        ``table`` and ``order`` are this module's constants, never input."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT host, outcome, stage, reason, details, at FROM {table} "
                f"WHERE rollout_id = ? ORDER BY {order}",
                (rollout_id,),
            ).fetchall()
        return [
            (
                str(r[0]),
                Outcome(r[1]),
                None if r[2] is None else Stage(r[2]),
                r[3],
                tuple(json.loads(r[4])) if r[4] else (),
                float(r[5]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------ the event subscriber

    def record(self, event: Event) -> None:
        """Subscriber: make an engine event durable, in one transaction. Each kind of event
        has its handlers (``_HANDLERS``): rollout events update the rollout's waves and hosts,
        rollback events the ``rollbacks`` table, both the timeline."""
        handlers = _HANDLERS.get((type(event), event.kind), ())
        if not handlers:
            return
        with self._tx() as db:
            for handle in handlers:
                handle(db, event)

    def unfinished_runs(self) -> list[str]:
        """Rollouts whose last run has no end: running now, or its controller died."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT rollout_id FROM runs WHERE finished_at IS NULL"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def mark_interrupted(self, rollout_id: str, at: float) -> None:
        """Record that the runs of a rollout without an end ended (their controller died:
        SIGKILL, a crash, a power loss): they end ``at`` as interrupted, and a wave left
        running is canceled, as Ctrl-C leaves it (running the same command again resumes).
        Called only when no process holds the rollout's lock (``close_interrupted``)."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, interrupted = 1 "
                "WHERE rollout_id = ? AND finished_at IS NULL",
                (at, rollout_id),
            )
            db.execute(
                "UPDATE waves SET state = ?, finished_at = ? WHERE rollout_id = ? AND state = ?",
                (WaveState.CANCELED.value, at, rollout_id, WaveState.RUNNING.value),
            )

    def mark_forced(self, rollout_id: str, wave: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE waves SET forced = 1 WHERE rollout_id = ? AND name = ?", (rollout_id, wave)
            )


def _insert_content(
    db: sqlite3.Connection, rollout_id: str, revision: int, content: Content, note: str, at: float
) -> None:
    db.execute(
        "INSERT INTO contents (rollout_id, revision, campaign, inventory_sha, playbook, "
        "playbook_sha, playbook_json, inventory_json, note, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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


def _rollout_row(r: tuple[object, ...]) -> RolloutRow:
    waves = json.loads(str(r[4]))
    return RolloutRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        tuple(waves),
        float(str(r[5])),
        None if r[6] is None else float(str(r[6])),
        str(r[7] or ""),
    )


# ---------------------------------------------------------------- the events, one handler each


def _run_started(db: sqlite3.Connection, event: RolloutStarted) -> None:
    # The account is this process's: the journal is written by the process that runs the
    # command.
    db.execute(
        "INSERT INTO runs (rollout_id, kind, forced, started_at, account) VALUES (?, ?, ?, ?, ?)",
        (event.rollout_id, event.kind.value, int(event.forced), event.at, operator_account()),
    )


def _wave_started(db: sqlite3.Connection, event: WaveStarted) -> None:
    db.execute(
        "UPDATE waves SET state = ?, total = ?, max_fail_percentage = ?, "
        "started_at = COALESCE(started_at, ?), finished_at = NULL, "
        "size = COALESCE(?, size) WHERE rollout_id = ? AND name = ?",
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


def _host_started(db: sqlite3.Connection, event: HostStarted) -> None:
    # Applied again after a rollback: a later rollback must take it on again.
    db.execute(
        "DELETE FROM rollbacks WHERE rollout_id = ? AND host = ?", (event.rollout_id, event.host)
    )
    db.execute(
        "INSERT INTO hosts (rollout_id, host, wave, attempts, started_at, position) "
        f"VALUES (?, ?, ?, 1, ?, {_NEXT_POSITION.format(table='hosts')}) "
        # A host started again keeps its place: the order is the order hosts first started.
        "ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "attempts = attempts + 1, started_at = excluded.started_at",
        (event.rollout_id, event.host, event.wave, event.at, event.rollout_id),
    )


def _host_finished(db: sqlite3.Connection, event: HostFinished) -> None:
    db.execute(
        "UPDATE hosts SET outcome = ?, stage = ?, reason = ?, changes = ?, "
        "finished_at = ?, duration = ? WHERE rollout_id = ? AND host = ?",
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


def _host_restored(db: sqlite3.Connection, event: HostFinished) -> None:
    """A host's rollback: its last one replaces the one before (``rollbacks``)."""
    db.execute(
        "INSERT INTO rollbacks (rollout_id, host, outcome, stage, reason, details, at, position) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, {_NEXT_POSITION.format(table='rollbacks')}) "
        "ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "outcome = excluded.outcome, stage = excluded.stage, reason = excluded.reason, "
        "details = excluded.details, at = excluded.at",
        (
            event.rollout_id,
            event.host,
            event.outcome.value,
            None if event.reason is None else event.reason.stage.value,
            None if event.reason is None else event.reason.message,
            json.dumps(list(event.details)),
            event.at,
            event.rollout_id,
        ),
    )


def _timeline_entry(db: sqlite3.Connection, event: HostFinished) -> None:
    """Every outcome a host had, whatever the run (``raorch show --host``)."""
    db.execute(
        "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at, duration) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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


def _gate_evaluated(db: sqlite3.Connection, event: GateEvaluated) -> None:
    db.execute(
        "UPDATE waves SET gate_held = ?, failure_percentage = ? WHERE rollout_id = ? AND name = ?",
        (int(event.held), event.failure_percentage, event.rollout_id, event.wave),
    )


def _wave_finished(db: sqlite3.Connection, event: WaveFinished) -> None:
    db.execute(
        "UPDATE waves SET state = ?, finished_at = ? WHERE rollout_id = ? AND name = ?",
        (event.state.value, event.at, event.rollout_id, event.wave),
    )


def _wave_rolled_back(db: sqlite3.Connection, event: WaveFinished) -> None:
    """A rollback's wave: rolled back once it restored a host (a rollback that restored none
    leaves the wave as the rollout left it)."""
    if event.counts.get(Outcome.ROLLED_BACK):
        db.execute(
            "UPDATE waves SET state = ?, finished_at = ? WHERE rollout_id = ? AND name = ?",
            (WaveState.ROLLED_BACK.value, event.at, event.rollout_id, event.wave),
        )


def _run_finished(db: sqlite3.Connection, event: RolloutFinished) -> None:
    db.execute(
        "UPDATE runs SET finished_at = ?, interrupted = ? WHERE seq = "
        "(SELECT MAX(seq) FROM runs WHERE rollout_id = ?)",
        (event.at, int(event.interrupted), event.rollout_id),
    )


_Handler = Callable[[sqlite3.Connection, Any], None]
_E = TypeVar("_E", bound=Event)


def _on(
    event_type: type[_E],
    kinds: Iterable[RunKind],
    *handlers: Callable[[sqlite3.Connection, _E], None],
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
}
