"""The journal on PostgreSQL (engine/journal_pg.py) against a real server (the ``postgres``
fixture, tests/conftest.py): what only a shared server asks. Its versions and migrations,
the first snapshot kept when two processes commit one at once, the run lock's refusal, and
what the commands say about a URL that is wrong, a server that cannot be reached or refuses
the login, a missing database: what, where, what to do, and never the password.

The event handlers, the read side and the run lock's life are the store's tests, run on both
backends (test_journal_store.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pg_service import ROLE_PASSWORD, PostgresServer, free_port
from raorch.cli.journal import find_journal, open_store
from raorch.cli.main import main
from raorch.cli.verify import record_verify
from raorch.engine import journal_pg_schema
from raorch.engine.journal import Journal
from raorch.engine.journal_pg import PgJournal, run_lock_key
from raorch.engine.journal_pg_schema import SCHEMA_VERSION
from raorch.engine.journal_url import mask_url, scrub
from raorch.engine.store import operator_account
from raorch.models.errors import ExitCode, RefusedError


def version_of(url: str) -> int | None:
    """Crafted on purpose: the version row, below what the store reads."""
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return None
        found = db.execute("SELECT version FROM schema_version").fetchone()
        return None if found is None else int(found[0])


def table_exists(url: str, table: str) -> bool:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        return bool(row and row[0])


def cli(args: list[str], tmp_path: Path, **env: str) -> tuple[int, str]:
    """A command, in process; its exit code and everything it printed."""
    runner = CliRunner()
    result = runner.invoke(main, args, env={"RAORCH_HOME": str(tmp_path / "home"), **env})
    return result.exit_code, result.output


# ---------------------------------------------------------------- versions and migrations


def test_a_new_database_is_made_a_journal_of_the_current_version(postgres_url: str) -> None:
    assert version_of(postgres_url) is None
    journal = PgJournal(postgres_url)
    journal.close()
    assert version_of(postgres_url) == SCHEMA_VERSION
    again = PgJournal(postgres_url, create=False)  # already current: only read
    try:
        assert again.rollouts() == [] and version_of(postgres_url) == SCHEMA_VERSION
    finally:
        again.close()


def test_a_journal_of_a_newer_raorch_is_refused_and_left_alone(
    postgres_url: str, tmp_path: Path
) -> None:
    PgJournal(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # as a newer raorch leaves it
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RefusedError) as refused:
        PgJournal(postgres_url)
    message = str(refused.value)
    assert mask_url(postgres_url) in message and "newer raorch" in message
    assert f"version {SCHEMA_VERSION + 1}" in message
    assert "--journal" in refused.value.hint and "upgrade" in refused.value.hint
    assert ROLE_PASSWORD not in message
    assert version_of(postgres_url) == SCHEMA_VERSION + 1

    code, output = cli(["status", "--journal", postgres_url], tmp_path)
    assert code == int(ExitCode.REFUSED), output
    assert "newer raorch" in output and mask_url(postgres_url) in output
    assert ROLE_PASSWORD not in output


def test_a_migration_that_fails_leaves_the_database_as_it_was(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: psycopg.Connection[object]) -> None:
        raise psycopg.OperationalError("disk full")

    monkeypatch.setattr(journal_pg_schema, "_STEPS", (*journal_pg_schema._STEPS, broken))
    monkeypatch.setattr(journal_pg_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(Exception, match="disk full"):
        PgJournal(postgres_url)
    # DDL is transactional: not even the first step's tables are there.
    assert version_of(postgres_url) is None and not table_exists(postgres_url, "rollouts")
    monkeypatch.undo()
    PgJournal(postgres_url).close()
    assert version_of(postgres_url) == SCHEMA_VERSION


def run_at_once(count: int, work: Callable[[], object]) -> list[object]:
    """``work`` in ``count`` threads released together; their answers (or exceptions)."""
    start = threading.Barrier(count)
    answers: list[object] = []

    def one() -> None:
        start.wait()
        try:
            answers.append(work())
        except BaseException as exc:
            answers.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_several_processes_making_the_journal_at_once_all_get_it(postgres_url: str) -> None:
    """Each with its own connection, as processes on several machines would have."""

    def open_and_read() -> object:
        journal = PgJournal(postgres_url)
        try:
            return journal.rollouts()
        finally:
            journal.close()

    assert run_at_once(4, open_and_read) == [[]] * 4
    assert version_of(postgres_url) == SCHEMA_VERSION


def test_two_controllers_opening_the_same_campaign_at_once_make_one_rollout(
    postgres_url: str,
) -> None:
    PgJournal(postgres_url).close()

    def open_campaign() -> object:
        journal = PgJournal(postgres_url)
        try:
            return journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
        finally:
            journal.close()

    ids = run_at_once(4, open_campaign)
    assert all(isinstance(i, str) for i in ids), ids
    assert len(set(ids)) == 1
    journal = PgJournal(postgres_url)
    try:
        assert [r.id for r in journal.rollouts()] == ids[:1]
    finally:
        journal.close()


# ---------------------------------------------------------------- the first snapshot wins

SAVE_SNAPSHOT = """
import json, sys
from raorch.cli.journal import open_store
store = open_store(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
store.save_snapshot(sys.argv[2], "h1", sys.argv[3])
print(json.dumps(store.snapshot(sys.argv[2], "h1")), flush=True)
"""
HOLD = 4242  # the advisory lock the test holds while the first snapshot's transaction is open


def wait_for_sessions(db: psycopg.Connection[tuple[object, ...]], wait_event: str) -> None:
    """Until a session of this database waits on a lock of that kind (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = %s",
            (wait_event,),
        ).fetchone()
        if row is not None and row[0] >= 1:
            return
        assert time.monotonic() < deadline, f"no session came to wait on {wait_event}"
        time.sleep(0.02)


def test_two_processes_committing_a_snapshot_for_the_same_host_keep_the_first(
    postgres_url: str,
) -> None:
    """Two processes (workers on two machines, say) commit a snapshot for the same host at
    once: the first one's transaction is held open between its insert and its commit (a
    trigger made for this test waits on an advisory lock the test holds), the second one's
    insert comes meanwhile. When the first commits, the second inserts nothing and returns:
    both read the first's snapshot. A read before the write would have read "none" in both."""
    journal = PgJournal(postgres_url)
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(
            "CREATE FUNCTION hold_first() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD}); RETURN NULL; END $$"
        )
        db.execute(
            "CREATE TRIGGER hold_first AFTER INSERT ON snapshots FOR EACH ROW "
            "WHEN (NEW.data = 'first') EXECUTE FUNCTION hold_first()"
        )
        db.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
        procs: list[subprocess.Popen[str]] = []
        try:
            for data, wait_event in (("first", "advisory"), ("second", "transactionid")):
                proc = subprocess.Popen(
                    [sys.executable, "-c", SAVE_SNAPSHOT, postgres_url, rid, data],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                procs.append(proc)
                assert proc.stdin is not None and proc.stdout is not None
                assert proc.stdout.readline() == "open\n"
                proc.stdin.write("go\n")
                proc.stdin.flush()
                wait_for_sessions(db, wait_event)
            db.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
            answers = [proc.communicate(timeout=60) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert [p.returncode for p in procs] == [0, 0], answers
    assert [json.loads(out) for out, _ in answers] == ["first", "first"]
    assert journal.snapshot(rid, "h1") == "first"
    journal.close()


# ---------------------------------------------------------------- the run lock


def test_the_run_lock_is_an_advisory_lock_named_without_the_password(postgres_url: str) -> None:
    first, second = PgJournal(postgres_url), PgJournal(postgres_url)
    try:
        rid = first.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
        with first.lock(rid):
            with psycopg.connect(postgres_url, autocommit=True) as db:
                # Held by a session of its own (not the store's connection).
                row = db.execute("SELECT pg_try_advisory_lock(%s)", (run_lock_key(rid),))
                assert row.fetchone() == (False,)
            with pytest.raises(RefusedError) as refused, second.lock(rid):
                pass
        message = str(refused.value)
        assert f"its run lock in the journal {mask_url(postgres_url)} is held" in message
        # Where the holder is: on several machines, the one to wait for (or stop).
        assert f"held by {operator_account()} from 127.0.0.1 since 20" in message
        assert ROLE_PASSWORD not in message
        # pg_locks shows a bigint key as two unsigned halves: keys of either sign are found.
        names = (f"rollout-{n}" for n in range(100))
        signs = {run_lock_key(name) < 0: name for name in names}
        for name in (signs[True], signs[False]):
            assert not second.is_running(name)
            with first.lock(name):
                assert second.is_running(name), (name, run_lock_key(name))
    finally:
        first.close()
        second.close()


# ---------------------------------------------------------------- what the commands say


def test_a_reading_command_refuses_a_database_without_a_journal_and_makes_none(
    postgres_url: str, tmp_path: Path
) -> None:
    for args in (["status"], ["history"], ["show", "x"], ["report"], ["rollback", "--last"]):
        code, output = cli([*args, "--journal", postgres_url], tmp_path)
        assert code == int(ExitCode.REFUSED), output
        assert f"there is no journal in {mask_url(postgres_url)} (named by --journal" in output
        assert "raorch rollout makes it" in output and ROLE_PASSWORD not in output
    code, output = cli(["history"], tmp_path, RAORCH_JOURNAL=postgres_url)
    assert code == int(ExitCode.REFUSED) and "(named by RAORCH_JOURNAL" in output, output
    assert find_journal(postgres_url) is None
    assert record_verify(tmp_path / "inv.yaml", tmp_path / "pb.yaml", [], postgres_url) == ""
    assert version_of(postgres_url) is None  # never made by a command that reads it


@pytest.fixture
def bad_urls(postgres: PostgresServer) -> dict[str, tuple[str, int, str]]:
    """name -> (URL, the exit code, what the message says)."""
    good = postgres.new_database("bad_urls")
    PgJournal(good).close()
    database = good.rsplit("/", 1)[1]
    closed = free_port()
    return {
        "not a journal URL": (f"mysql://raorch:{ROLE_PASSWORD}@db/x", 2, "not a journal URL"),
        "a port not a number": (
            f"postgresql://raorch:{ROLE_PASSWORD}@127.0.0.1:fivefourthree/x",
            2,
            "the port of a PostgreSQL URL is a number",
        ),
        "a parameter libpq does not know": (
            f"{good}?colour=blue",
            2,
            "a PostgreSQL URL libpq cannot read",
        ),
        "a relative SQLite path": ("sqlite:state.db", 2, "not a journal URL"),
        "nothing listening": (
            f"postgresql://raorch:{ROLE_PASSWORD}@127.0.0.1:{closed}/x",
            int(ExitCode.UNREACHABLE),
            "cannot reach the journal's PostgreSQL server",
        ),
        "a wrong password": (
            postgres.url(database, password="not-the-" + ROLE_PASSWORD),
            int(ExitCode.UNREACHABLE),
            "refused the login",
        ),
        "no such database": (
            postgres.url("nowhere"),
            int(ExitCode.REFUSED),
            "the journal's database does not exist",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not a journal URL",
        "a port not a number",
        "a parameter libpq does not know",
        "a relative SQLite path",
        "nothing listening",
        "a wrong password",
        "no such database",
    ],
)
@pytest.mark.parametrize("given_by", ["--journal", "RAORCH_JOURNAL"])
def test_a_wrong_journal_is_told_what_where_and_what_to_do_without_the_password(
    bad_urls: dict[str, tuple[str, int, str]], case: str, given_by: str, tmp_path: Path
) -> None:
    url, expected, what = bad_urls[case]
    secret = "not-the-" + ROLE_PASSWORD if case == "a wrong password" else ROLE_PASSWORD
    for args in (["history"], ["status", "--last"]):
        if given_by == "--journal":
            code, output = cli([*args, "--journal", url], tmp_path)
        else:
            code, output = cli(args, tmp_path, RAORCH_JOURNAL=url)
        assert code == expected, output
        assert what in output, output
        assert secret not in output and ROLE_PASSWORD not in output, output
        assert output.startswith("error: ") and "Traceback" not in output
        if expected == 2:  # the URL itself: where it came from, and the forms it may take
            assert given_by in output and "postgresql://USER@HOST" in output, output
        else:  # the server: which one, and what to do
            assert mask_url(url).split("@", 1)[1].split("/")[0] in output, output
            assert any(w in output for w in ("check", "create it")), output


# ---------------------------------------------------------------- the URL, masked


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        (
            "postgresql://raorch:s3cret@db:5432/raorch",
            "postgresql://raorch:***@db:5432/raorch",
            ["s3cret"],
        ),
        ("postgresql://raorch@db/raorch", "postgresql://raorch@db/raorch", []),
        ("postgres://u:p%40ss@h1:1,h2:2/db", "postgres://u:***@h1:1,h2:2/db", ["p%40ss", "p@ss"]),
        ("postgresql://u:a@b@h/d", "postgresql://u:***@h/d", ["a@b"]),  # an unescaped @
        (
            "postgresql:///db?host=/run&password=s3cret&sslpassword=k3y&sslmode=require",
            "postgresql:///db?host=/run&password=***&sslpassword=***&sslmode=require",
            ["s3cret", "k3y"],
        ),
    ],
)
def test_a_url_is_shown_without_its_secrets(url: str, shown: str, secrets: list[str]) -> None:
    assert mask_url(url) == shown
    for secret in secrets:
        # What the driver says may quote the secret, raw or decoded: scrubbed before shown.
        assert scrub(f"bad password {secret!r} in {url}", url).count(secret) == 0


def test_a_store_opened_by_url_is_the_one_named(postgres_url: str, tmp_path: Path) -> None:
    """``open_store(url)``: what a worker opens; a journal must be there already."""
    with pytest.raises(RefusedError, match="there is no journal in"):
        open_store(postgres_url)
    made = open_store(postgres_url, create=True)
    rid = made.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
    made.close()
    worker = open_store(postgres_url)
    try:
        assert isinstance(worker, PgJournal) and [r.id for r in worker.rollouts()] == [rid]
        assert worker.location == mask_url(postgres_url)
    finally:
        worker.close()


def test_a_database_raorchs_role_does_not_own_is_refused_with_what_to_do(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Since PostgreSQL 15 only a database's owner may create tables in its public schema."""
    postgres.admin("CREATE DATABASE not_raorchs OWNER postgres")
    url = postgres.url("not_raorchs")
    with pytest.raises(RefusedError) as refused:
        open_store(url, create=True)
    message = str(refused.value)
    assert "refused what raorch asked" in message and mask_url(url) in message
    assert "permission denied" in message and "OWNER TO" in refused.value.hint
    assert ROLE_PASSWORD not in message
    assert version_of(url) is None  # nothing made, nothing left half made


def test_the_same_tables_and_columns_as_the_sqlite_journal(
    postgres_url: str, tmp_path: Path
) -> None:
    """The schema translated, not another one: every table and column of the SQLite journal
    (but ``meta``, where SQLite keeps its version a second time), no more."""
    Journal(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")  # crafted: the schema, below the store
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite = {
            t: {str(c[1]) for c in db.execute(f"PRAGMA table_info({t})")}
            for t in tables
            if t not in ("meta", "sqlite_sequence")
        }
    finally:
        db.close()
    PgJournal(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
        ).fetchall()
    postgresql: dict[str, set[str]] = {}
    for table, column in rows:
        postgresql.setdefault(str(table), set()).add(str(column))
    assert postgresql == sqlite


def test_a_server_that_would_commit_before_flushing_does_not_for_raorch(
    postgres: PostgresServer,
) -> None:
    """Durable when a call returns, also where the server's default says otherwise
    (``synchronous_commit = off``); a stronger setting is kept."""
    for setting, expected in (("off", "on"), ("remote_apply", "remote_apply")):
        url = postgres.new_database(f"sync_{setting}")
        name = url.rsplit("/", 1)[1]
        postgres.admin(f'ALTER DATABASE "{name}" SET synchronous_commit = {setting}')
        journal = PgJournal(url)
        try:
            row = journal._row("SHOW synchronous_commit")  # the store's own session
            assert row == (expected,), setting
        finally:
            journal.close()
