"""The journal: an embedded SQLite store of rollouts, waves, host outcomes and snapshots.

Its queries and event handlers are the PostgreSQL journal's too (``engine/journal_sql.py``);
this module is what is SQLite's: the file, its connection and transactions, the run and host
locks beside it, its migrations. Nothing is lost: every host outcome is committed when the host
finishes, and a host's snapshot is committed (from the worker thread, before the first write to
that host) against its primary key, so a resumed run never replaces the ORIGINAL snapshot with
one of a half-applied state. WAL mode: readers (``raorch status`` in another terminal) never
block the writer, and a commit survives the process being killed (SIGKILL) at any moment.

The store lives in ``$RAORCH_HOME`` (default ``./.raorch``): the directory is 0700 and the
files 0600, because snapshots describe the security settings of every host. Its schema has a
version (``engine/journal_schema.py``): a journal of an older raorch is migrated when opened,
one of a newer raorch refused. Order is a value (``position``), never the rowid.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from raorch.engine.journal_dialect import SQLITE
from raorch.engine.journal_schema import migrate
from raorch.engine.journal_sql import SqlJournal, Statements, Transaction
from raorch.engine.lock import host_lock, is_running, run_lock
from raorch.engine.paths import private_dir, private_file, state_home

JOURNAL_FILE = "state.db"  # in the state directory ($RAORCH_HOME)


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

    # ------------------------------------------------------------ the connection

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed when the block ends. ``BEGIN IMMEDIATE`` takes the
        file's write lock at once (another process's writes wait, up to the busy timeout)."""
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

    def _lock_rollouts(self, db: Transaction) -> None:
        """Nothing more to do: the transaction holds the whole file's write lock already."""
