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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from raorch.engine.journal_dialect import SQLITE
from raorch.engine.journal_schema import migrate
from raorch.engine.journal_sql import SqlJournal, Statements
from raorch.engine.lock import host_lock, is_running, run_lock
from raorch.engine.paths import private_dir, private_file, state_home
from raorch.engine.store import (
    Content,
    RolloutRow,
    VerifyRow,
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
from raorch.models.outcomes import Outcome, WaveState

JOURNAL_FILE = "state.db"  # in the state directory ($RAORCH_HOME)

# A new row's place in its rollout: after the last (journal_schema.POSITIONED). An upsert keeps
# the place of the row it updates. ``table`` is always this module's constant, never input.
_NEXT_POSITION = "(SELECT COALESCE(MAX(position), 0) + 1 FROM {table} WHERE rollout_id = ?)"


class Journal(SqlJournal):
    """The journal store in one SQLite database (``engine/store.py`` has its two sides; its
    queries: ``engine/journal_sql.py``). Thread-safe: one connection behind a lock (the engine
    writes from the event loop, and snapshots from worker threads). The run lock is a ``flock``
    beside it (``engine/lock.py``)."""

    _sql = Statements(SQLITE)

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

    def host_lock(
        self, rollout_id: str, host: str, wait: float | None
    ) -> AbstractContextManager[None]:
        """A ``flock`` beside the journal (engine/lock.py): the workers sharing this SQLite
        file share its directory (one machine: SQLite's WAL needs it, sqlite.org, "Write-Ahead
        Logging")."""
        return host_lock(self.path.parent, rollout_id, host, wait)

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

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # ------------------------------------------------------------ rollouts

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

    def save_targets(self, rollout_id: str, targets: dict[str, str]) -> None:
        """How each host is reached (JSON), the latest wins."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO targets (rollout_id, host, data) VALUES (?, ?, ?) "
                "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data",
                [(rollout_id, h, d) for h, d in targets.items()],
            )

    def close_rollout(self, rollout_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE rollouts SET closed_at = ? WHERE id = ?", (time.time(), rollout_id))

    # ------------------------------------------------------------ waves and hosts

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


def _site_checked(db: sqlite3.Connection, event: SiteChecked) -> None:
    """A site's last figures replace the ones before; its place is where it was first seen."""
    db.execute(
        "INSERT INTO sites (rollout_id, site, workers, queued, no_worker_since, at, position) "
        f"VALUES (?, ?, ?, ?, ?, ?, {_NEXT_POSITION.format(table='sites')}) "
        "ON CONFLICT (rollout_id, site) DO UPDATE SET workers = excluded.workers, "
        "queued = excluded.queued, no_worker_since = excluded.no_worker_since, "
        "at = excluded.at",
        (
            event.rollout_id,
            event.site,
            event.workers,
            event.queued,
            event.no_worker_since,
            event.at,
            event.rollout_id,
        ),
    )


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
    **_on(SiteChecked, [RunKind.ROLLOUT, RunKind.ROLLBACK], _site_checked),
}
