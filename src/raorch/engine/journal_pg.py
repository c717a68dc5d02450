"""The journal on PostgreSQL: the store several controllers and workers share.

The same journal as SQLite's (``engine/journal.py``): the same tables (translated,
``engine/journal_pg_schema.py``), the same versions, the same handler per event, the same
answers on the read side. What differs is what a server shared by several machines asks:

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
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg

from raorch.engine.journal_dialect import POSTGRESQL
from raorch.engine.journal_pg_schema import JournalMissing, migrate
from raorch.engine.journal_sql import SqlJournal, Statements
from raorch.engine.journal_url import mask_url, scrub
from raorch.engine.store import (
    Content,
    RolloutRow,
    VerifyRow,
    operator_account,
)
from raorch.models.errors import ExitCode, RaorchError, RefusedError
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
    def _tx(self) -> Iterator[_Db]:
        """One transaction, committed when the block ends (durable then)."""
        with self._lock, self._errors(), self._db.transaction():
            yield self._db

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return self._db.execute(sql, args).fetchall()

    def _row(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock, self._errors():
            return self._db.execute(sql, args).fetchone()

    # ------------------------------------------------------------ the run lock

    @contextmanager
    def _run_lock(self, rollout_id: str) -> Iterator[None]:
        # Named after who runs it, so that a second controller is told where the first is.
        session = connect(self.url, f"raorch run {operator_account()}")
        try:
            with self._errors():
                for name, value in _LOCK_SESSION.items():
                    session.execute(
                        "SELECT set_config(name, %s, false) FROM pg_settings WHERE name = %s",
                        (value, name),
                    )
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
        session = connect(self.url, f"raorch host {operator_account()}")
        key = host_lock_key(rollout_id, host)
        try:
            with self._errors():
                for name, value in _LOCK_SESSION.items():
                    session.execute(
                        "SELECT set_config(name, %s, false) FROM pg_settings WHERE name = %s",
                        (value, name),
                    )
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
        with self._tx() as db:
            # Two controllers opening the same campaign at once make one rollout.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLLOUTS_LOCK,))
            row = db.execute(
                "SELECT id FROM rollouts WHERE campaign = %s AND closed_at IS NULL "
                "ORDER BY created_at DESC, position DESC LIMIT 1",
                (campaign,),
            ).fetchone()
            if row is None:
                now = time.time()
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
                count = db.execute("SELECT COUNT(*) FROM rollouts").fetchone()
                rollout_id = f"{stamp}-{campaign[:8]}-{int(count[0] if count else 0) + 1}"
                db.execute(
                    "INSERT INTO rollouts (id, campaign, inventory, playbook, playbook_sha, "
                    "waves, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
                for name in waves:  # the inventory's order: positions drawn in this order
                    db.execute(
                        "INSERT INTO waves (rollout_id, name, state) VALUES (%s, %s, %s)",
                        (rollout_id, name, WaveState.PENDING.value),
                    )
                if content is not None:
                    _insert_content(db, rollout_id, 1, content, "began", now)
            else:
                rollout_id = str(row[0])
        found = self.rollout(rollout_id)
        assert found is not None
        return found

    def add_revision(
        self, rollout_id: str, content: Content, waves: tuple[str, ...], note: str
    ) -> int:
        now = time.time()
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLLOUTS_LOCK,))
            row = db.execute(
                "SELECT campaign, playbook, playbook_sha, waves, created_at FROM rollouts "
                "WHERE id = %s",
                (rollout_id,),
            ).fetchone()
            if row is None:
                raise KeyError(rollout_id)
            last_row = db.execute(
                "SELECT MAX(revision) FROM contents WHERE rollout_id = %s", (rollout_id,)
            ).fetchone()
            last = None if last_row is None else last_row[0]
            if last is None:
                # Opened without a content (as the SQLite journal's older rollouts): its first
                # content is known by its hashes only.
                first = Content(str(row[0]), "", str(row[1]), str(row[2] or ""), "", "")
                _insert_content(db, rollout_id, 1, first, "began", float(row[4]))
                last = 1
            revision = int(last) + 1
            _insert_content(db, rollout_id, revision, content, note, now)
            known = list(json.loads(str(row[3])))
            added = [w for w in waves if w not in known]
            for name in added:
                db.execute(
                    "INSERT INTO waves (rollout_id, name, state) VALUES (%s, %s, %s) "
                    "ON CONFLICT (rollout_id, name) DO NOTHING",
                    (rollout_id, name, WaveState.PENDING.value),
                )
            db.execute(
                "UPDATE rollouts SET campaign = %s, playbook = %s, playbook_sha = %s, "
                "waves = %s WHERE id = %s",
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
        with self._tx() as db:
            for host, data in targets.items():
                db.execute(
                    "INSERT INTO targets (rollout_id, host, data) VALUES (%s, %s, %s) "
                    "ON CONFLICT (rollout_id, host) DO UPDATE SET data = excluded.data",
                    (rollout_id, host, data),
                )

    def close_rollout(self, rollout_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE rollouts SET closed_at = %s WHERE id = %s", (time.time(), rollout_id)
            )

    # ------------------------------------------------------------ waves, hosts, runs

    def reset_hosts(self, rollout_id: str, hosts: list[str]) -> None:
        with self._tx() as db:
            for host in hosts:
                db.execute(
                    "UPDATE hosts SET outcome = NULL, stage = NULL, reason = NULL "
                    "WHERE rollout_id = %s AND host = %s",
                    (rollout_id, host),
                )

    def mark_interrupted(self, rollout_id: str, at: float) -> None:
        """As the SQLite journal's: the runs without an end end ``at``, interrupted, and a wave
        left running is canceled. Called only when no session holds the rollout's run lock."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = %s, interrupted = true "
                "WHERE rollout_id = %s AND finished_at IS NULL",
                (at, rollout_id),
            )
            db.execute(
                "UPDATE waves SET state = %s, finished_at = %s "
                "WHERE rollout_id = %s AND state = %s",
                (WaveState.CANCELED.value, at, rollout_id, WaveState.RUNNING.value),
            )

    def mark_forced(self, rollout_id: str, wave: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE waves SET forced = true WHERE rollout_id = %s AND name = %s",
                (rollout_id, wave),
            )

    # ------------------------------------------------------------ snapshots and changes

    def save_snapshot(
        self, rollout_id: str, host: str, data: str, revision: int | None = None
    ) -> None:
        """Commit a host's snapshot; the first one committed wins, by the primary key: a
        concurrent second insert waits for the first's commit, then does nothing. The revision
        the host is about to be applied with goes in the same transaction (before any write)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO snapshots (rollout_id, host, taken_at, data) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (rollout_id, host) DO NOTHING",
                (rollout_id, host, time.time(), data),
            )
            if revision is not None:
                db.execute(
                    "INSERT INTO host_contents (rollout_id, host, revision) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (rollout_id, host, revision),
                )

    def save_applied(self, rollout_id: str, host: str, data: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO applied (rollout_id, host, recorded_at, data) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (rollout_id, host) DO UPDATE SET "
                "data = excluded.data, recorded_at = excluded.recorded_at",
                (rollout_id, host, time.time(), data),
            )

    # ------------------------------------------------------------ rollbacks

    # ------------------------------------------------------------ platforms and verify

    def save_platform(
        self, rollout_id: str, host: str, caption: str, os_version: str, profile: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO platforms (rollout_id, host, caption, os_version, profile) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rollout_id, host) DO UPDATE SET "
                "caption = excluded.caption, os_version = excluded.os_version, "
                "profile = excluded.profile",
                (rollout_id, host, caption, os_version, profile),
            )

    def record_verify(self, rollout_id: str, rows: Iterable[VerifyRow]) -> None:
        with self._tx() as db:
            for row in rows:
                stage = None if row.stage is None else row.stage.value
                db.execute(
                    # The latest verdict replaces the one before and goes last (a new position).
                    "INSERT INTO verifications (rollout_id, host, outcome, stage, reason, "
                    "details, at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (rollout_id, host) DO UPDATE SET outcome = excluded.outcome, "
                    "stage = excluded.stage, reason = excluded.reason, "
                    "details = excluded.details, at = excluded.at, "
                    "position = nextval('journal_position')",
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
                    "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        """Subscriber: make an engine event durable, in one transaction, by the handlers of
        its type and kind (``_HANDLERS``, the same as the SQLite journal's)."""
        handlers = _HANDLERS.get((type(event), event.kind), ())
        if not handlers:
            return
        with self._tx() as db:
            for handle in handlers:
                handle(db, event)


def _insert_content(
    db: _Db, rollout_id: str, revision: int, content: Content, note: str, at: float
) -> None:
    db.execute(
        "INSERT INTO contents (rollout_id, revision, campaign, inventory_sha, playbook, "
        "playbook_sha, playbook_json, inventory_json, note, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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


def _run_started(db: _Db, event: RolloutStarted) -> None:
    db.execute(
        "INSERT INTO runs (rollout_id, kind, forced, started_at, account) "
        "VALUES (%s, %s, %s, %s, %s)",
        (event.rollout_id, event.kind.value, event.forced, event.at, operator_account()),
    )


def _wave_started(db: _Db, event: WaveStarted) -> None:
    db.execute(
        "UPDATE waves SET state = %s, total = %s, max_fail_percentage = %s, "
        "started_at = COALESCE(started_at, %s), finished_at = NULL, "
        "size = COALESCE(%s, size) WHERE rollout_id = %s AND name = %s",
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


def _host_started(db: _Db, event: HostStarted) -> None:
    # Applied again after a rollback: a later rollback must take it on again.
    db.execute(
        "DELETE FROM rollbacks WHERE rollout_id = %s AND host = %s",
        (event.rollout_id, event.host),
    )
    db.execute(
        "INSERT INTO hosts (rollout_id, host, wave, attempts, started_at) "
        "VALUES (%s, %s, %s, 1, %s) "
        # A host started again keeps its place: the order is the order hosts first started.
        "ON CONFLICT (rollout_id, host) DO UPDATE SET "
        "attempts = hosts.attempts + 1, started_at = excluded.started_at",
        (event.rollout_id, event.host, event.wave, event.at),
    )


def _host_finished(db: _Db, event: HostFinished) -> None:
    db.execute(
        "UPDATE hosts SET outcome = %s, stage = %s, reason = %s, changes = %s, "
        "finished_at = %s, duration = %s WHERE rollout_id = %s AND host = %s",
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


def _host_restored(db: _Db, event: HostFinished) -> None:
    """A host's rollback: its last one replaces the one before (``rollbacks``), in its place."""
    db.execute(
        "INSERT INTO rollbacks (rollout_id, host, outcome, stage, reason, details, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (rollout_id, host) DO UPDATE SET "
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
        ),
    )


def _timeline_entry(db: _Db, event: HostFinished) -> None:
    """Every outcome a host had, whatever the run (``raorch show --host``)."""
    db.execute(
        "INSERT INTO timeline (rollout_id, host, kind, outcome, stage, reason, at, duration) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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


def _gate_evaluated(db: _Db, event: GateEvaluated) -> None:
    db.execute(
        "UPDATE waves SET gate_held = %s, failure_percentage = %s "
        "WHERE rollout_id = %s AND name = %s",
        (event.held, event.failure_percentage, event.rollout_id, event.wave),
    )


def _wave_finished(db: _Db, event: WaveFinished) -> None:
    db.execute(
        "UPDATE waves SET state = %s, finished_at = %s WHERE rollout_id = %s AND name = %s",
        (event.state.value, event.at, event.rollout_id, event.wave),
    )


def _site_checked(db: _Db, event: SiteChecked) -> None:
    """A site's last figures replace the ones before; its place is where it was first seen."""
    db.execute(
        "INSERT INTO sites (rollout_id, site, workers, queued, no_worker_since, at) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
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
        ),
    )


def _wave_rolled_back(db: _Db, event: WaveFinished) -> None:
    """A rollback's wave: rolled back once it restored a host."""
    if event.counts.get(Outcome.ROLLED_BACK):
        db.execute(
            "UPDATE waves SET state = %s, finished_at = %s WHERE rollout_id = %s AND name = %s",
            (WaveState.ROLLED_BACK.value, event.at, event.rollout_id, event.wave),
        )


def _run_finished(db: _Db, event: RolloutFinished) -> None:
    db.execute(
        "UPDATE runs SET finished_at = %s, interrupted = %s WHERE seq = "
        "(SELECT MAX(seq) FROM runs WHERE rollout_id = %s)",
        (event.at, event.interrupted, event.rollout_id),
    )


_Handler = Callable[[_Db, Any], None]
_E = TypeVar("_E", bound=Event)


def _on(
    event_type: type[_E], kinds: Iterable[RunKind], *handlers: Callable[[_Db, _E], None]
) -> dict[tuple[type, RunKind], tuple[_Handler, ...]]:
    return {(event_type, kind): handlers for kind in kinds}


# (the event's type, its kind) -> what the journal does with it, in order, in one transaction:
# the SQLite journal's table (engine/journal.py, _HANDLERS), handler for handler.
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
