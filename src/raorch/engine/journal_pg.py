"""The journal on PostgreSQL: the store several controllers and workers share.

The same journal as SQLite's (``engine/journal.py``): the same tables, queries and handler per
event (``engine/journal_sql.py``, in PostgreSQL's dialect), the same versions
(``engine/journal_pg_schema.py``), the same answers on the read side. What differs is what a
server shared by several machines asks, and this module's:

- **Durable when a call returns.** Each write is one transaction committed before the call
  returns (PostgreSQL's default ``synchronous_commit = on``: the commit is flushed to the
  server's WAL first); a killed controller loses nothing it was told.
- **The first snapshot wins by a constraint.** ``snapshots`` has the host's primary key and a
  snapshot is inserted with ``ON CONFLICT DO NOTHING``: of two processes (on two machines)
  committing a snapshot for the same host at once, the second waits for the first's commit and
  inserts nothing. Never a read before the write (both would read "none").
- **Order by a sequence** (``position``), and new rollouts made behind a transaction-level
  advisory lock, so that two controllers opening the same campaign at once make one rollout.
- **The run lock is a session-level advisory lock** (``pg_try_advisory_lock``, PostgreSQL
  documentation, "Explicit Locking", "Advisory Locks") on a key derived from the rollout id,
  held by a connection of its own for as long as the command runs, and unlocked when it ends.
  A holder that dies instead loses it with its session, whatever the way (the process killed:
  its socket closes and the server ends the session a moment later; its machine gone: TCP
  keepalives, set on that session, end it within about a minute). ``is_running`` asks
  ``pg_locks`` whether any session holds it.
- **Never a password in a message.** ``location`` is the URL masked; the driver's errors are
  scrubbed of the URL's secrets before they become raorch's (``engine/journal_url.py``).

Thread-safe as SQLite's: one connection behind a lock (the engine writes from the event loop,
snapshots come from worker threads). Open one store per process (never across a fork).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg

from raorch.engine.journal_dialect import POSTGRESQL
from raorch.engine.journal_pg_schema import JournalMissing, migrate
from raorch.engine.journal_sql import SqlJournal, Statements, Transaction
from raorch.engine.journal_url import mask_url, scrub
from raorch.engine.store import operator_account
from raorch.models.errors import ExitCode, RaorchError, RefusedError

__all__ = ["JournalMissing", "JournalServerError", "PgJournal", "run_lock_key"]

_Db = psycopg.Connection[Any]

# Seconds to wait for the server when connecting; a server that does not answer is an error,
# not a hang.
CONNECT_TIMEOUT = 10
# The run lock's session: TCP keepalives that end it within about a minute when its
# controller's machine is gone (30 s idle, then 3 probes 10 s apart), and no idle timeout (an
# ``idle_session_timeout`` set on the server would end it while the rollout runs). PostgreSQL
# documentation, "Server Configuration", "Connections and Authentication" and "Client
# Connection Defaults": any user may set them for their own session. Set only where the
# server has them (idle_session_timeout came with PostgreSQL 14).
_LOCK_SESSION = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "idle_session_timeout": "0",
}
# A new rollout is made behind this transaction-level advisory lock (a key of raorch's own).
_ROLLOUTS_LOCK = 0x72616F72636872


# A run lock held (pg_locks as ``l``), by the key's two unsigned halves.
_HELD = (
    "l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1"
)


def run_lock_key(rollout_id: str) -> int:
    """The advisory lock key of a rollout's run lock: 64 bits of a hash of its id (a bigint;
    PostgreSQL shows it in ``pg_locks`` as ``classid`` (high half) and ``objid`` (low half),
    with ``objsubid`` 1)."""
    digest = hashlib.sha256(b"raorch run lock\0" + rollout_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def host_lock_key(rollout_id: str, host: str) -> int:
    """The advisory lock key of a host of a rollout (``host_lock``): another prefix than the
    run lock's, so that the two never share a key."""
    digest = hashlib.sha256(
        b"raorch host lock\0" + rollout_id.encode("utf-8") + b"\0" + host.encode("utf-8")
    ).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _halves(rollout_id: str) -> tuple[int, int]:
    """The run lock's key as ``pg_locks`` shows it: ``classid`` and ``objid``, unsigned."""
    key = run_lock_key(rollout_id) & 0xFFFF_FFFF_FFFF_FFFF
    return key >> 32, key & 0xFFFF_FFFF


class JournalServerError(RaorchError):
    """The journal's PostgreSQL server could not be reached, refused the login, or failed."""

    exit_code = ExitCode.UNREACHABLE


def _connect_error(error: psycopg.Error, url: str, location: str) -> RaorchError:
    """What went wrong connecting, in raorch's words: what, where, what to do."""
    detail = scrub(str(error).strip(), url)
    text = detail.casefold()
    if "does not exist" in text and "database" in text:
        return RefusedError(
            f"the journal's database does not exist on its PostgreSQL server ({location}): "
            f"{detail}",
            "create it first, as a PostgreSQL superuser: CREATE DATABASE <name> OWNER <user> "
            "(docs/journal.md); or fix the database name in --journal / RAORCH_JOURNAL",
        )
    if any(
        sign in text
        for sign in ("authentication failed", "no password supplied", 'role "', "pg_hba.conf")
    ):
        return JournalServerError(
            f"the journal's PostgreSQL server refused the login ({location}): {detail}",
            "check the user and its password (in ~/.pgpass, PGPASSWORD or the URL) and the "
            "server's pg_hba.conf",
        )
    return JournalServerError(
        f"cannot reach the journal's PostgreSQL server ({location}): {detail}",
        "check that the server runs and the host and port in --journal / RAORCH_JOURNAL",
    )


def connect(url: str, name: str = "raorch") -> _Db:
    """A connection in autocommit mode (each write opens its own transaction), or raorch's
    error saying why not, without the password. ``name``: its ``application_name``, which
    ``pg_stat_activity`` shows (at most 63 bytes are kept)."""
    location = mask_url(url)
    try:
        db = psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name=name
        )
    except psycopg.Error as error:
        raise _connect_error(error, url, location) from None
    try:
        # Durable when a write returns, also on a server whose default is not: "off" is the
        # one setting where a commit returns before it is flushed (PostgreSQL documentation,
        # "synchronous_commit"); a stronger one (remote_apply...) is kept.
        setting = db.execute("SHOW synchronous_commit").fetchone()
        if setting is not None and setting[0] == "off":
            db.execute("SET synchronous_commit = on")
    except psycopg.Error as error:
        db.close()
        raise _connect_error(error, url, location) from None
    return db


class PgJournal(SqlJournal):
    """The journal store in a PostgreSQL database (``engine/store.py`` has its two sides; its
    queries: ``engine/journal_sql.py``).

    ``create``: make the journal's tables in an empty database (``raorch rollout``); without
    it, a database holding no journal raises ``JournalMissing`` and is left untouched."""

    _sql = Statements(POSTGRESQL)

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._location = mask_url(url)
        self._lock = threading.Lock()
        self._db = connect(url)
        try:
            with self._errors():
                migrate(self._db, self._location, create)
        except BaseException:
            self._db.close()
            raise

    @property
    def location(self) -> str:
        return self._location

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ the connection

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The server lost in the middle of a command, or a privilege the role lacks: raorch's
        error, without the password."""
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as error:
            raise RefusedError(
                f"the journal's database refused what raorch asked ({self._location}): "
                f"{scrub(str(error).strip(), self.url)}",
                "raorch's role must own the database (as a PostgreSQL superuser: ALTER "
                "DATABASE <name> OWNER TO <user>; docs/journal.md)",
            ) from None
        except psycopg.OperationalError as error:
            raise JournalServerError(
                f"lost the journal's PostgreSQL server ({self._location}): "
                f"{scrub(str(error).strip(), self.url)}",
                "what was recorded before is kept; when the server is back, run the same "
                "command again (it resumes)",
            ) from None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction, committed when the block ends (durable then)."""
        with self._lock, self._errors(), self._db.transaction(), self._db.cursor() as cursor:
            yield cursor

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return self._db.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock, self._errors():
            return self._db.execute(sql, args).fetchone()

    def _lock_rollouts(self, db: Transaction) -> None:
        """A transaction-level advisory lock: released when the transaction ends."""
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLLOUTS_LOCK,))

    # ------------------------------------------------------------ the run lock

    def _lock_session(self, kind: str) -> _Db:
        """A session of its own for an advisory lock (``_LOCK_SESSION``'s settings), named
        ``raorch <kind> <account>`` in ``pg_stat_activity``: a refusal names the holder."""
        session = connect(self.url, f"raorch {kind} {operator_account()}")
        try:
            with self._errors():
                for name, value in _LOCK_SESSION.items():
                    session.execute(
                        "SELECT set_config(name, %s, false) FROM pg_settings WHERE name = %s",
                        (value, name),
                    )
        except BaseException:
            session.close()
            raise
        return session

    @contextmanager
    def _run_lock(self, rollout_id: str) -> Iterator[None]:
        # Named after who runs it, so that a second controller is told where the first is.
        session = self._lock_session("run")
        try:
            with self._errors():
                row = session.execute(
                    "SELECT pg_try_advisory_lock(%s)", (run_lock_key(rollout_id),)
                ).fetchone()
            if row is None or not row[0]:
                raise RefusedError(
                    f"rollout {rollout_id} is already being run by another raorch process "
                    f"(its run lock in the journal {self._location} is held"
                    f"{self._holder(rollout_id)})",
                    "wait for it to finish (raorch status --last --watch), or stop it",
                )
            try:
                yield
            finally:
                # Released before the session is closed: the server ends a closed session a
                # moment later, not when the client closes it, and a command that follows at
                # once (``rollout --wave canary && rollout --wave pilot``) would be refused.
                with contextlib.suppress(psycopg.Error):  # a lost session released it anyway
                    session.execute("SELECT pg_advisory_unlock(%s)", (run_lock_key(rollout_id),))
        finally:
            session.close()

    def lock(self, rollout_id: str) -> AbstractContextManager[None]:
        return self._run_lock(rollout_id)

    @contextmanager
    def _host_lock(self, rollout_id: str, host: str, wait: float | None) -> Iterator[None]:
        # A session of its own holds it, as the run lock: the server releases it when the
        # worker holding it dies (its socket closes; its machine gone: the keepalives).
        session = self._lock_session("host")
        key = host_lock_key(rollout_id, host)
        try:
            with self._errors():
                end = None if wait is None else time.monotonic() + wait
                pause = 0.02
                while True:
                    row = session.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if row is not None and row[0]:
                        break
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"host {host} is held by another worker")
                    time.sleep(pause if left is None else min(pause, left))
                    pause = min(pause * 2, 0.5)
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):
                    session.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            session.close()

    def host_lock(
        self, rollout_id: str, host: str, wait: float | None
    ) -> AbstractContextManager[None]:
        """One worker at a time on a host of a rollout, across machines: a session-level
        advisory lock on a key of (rollout, host), like the run lock."""
        return self._host_lock(rollout_id, host, wait)

    def is_running(self, rollout_id: str) -> bool:
        row = self._row(
            f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {_HELD})", _halves(rollout_id)
        )
        return bool(row and row[0])

    def _holder(self, rollout_id: str) -> str:
        """ ", by user@machine (its application_name) from ADDRESS since TIME", as far as
        ``pg_stat_activity`` tells this role (another role's session may show nothing)."""
        row = self._row(
            "SELECT a.application_name, host(a.client_addr), "
            "to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') "
            f"FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_HELD} LIMIT 1",
            _halves(rollout_id),
        )
        if row is None:
            return ""
        name, address, since = row
        who = str(name).removeprefix("raorch run ") if name else ""
        where = f" by {who}" if who else ""
        where += f" from {address}" if address else ""
        return where + (f" since {since}" if since else "")
