"""Fixtures for every test directory: a real PostgreSQL server, and the journal store on each
backend.

- ``postgres``: session-scoped; a PostgreSQL server (``pg_service.PostgresServer``) started on
  127.0.0.1 in a temporary directory, stopped and removed at the end. Without PostgreSQL the
  test is skipped with how to install it, except in CI (``CI=true``), where it fails.
  ``postgres.new_database()`` -> the URL of a fresh database (role ``raorch``, with its
  password: ``pg_service.ROLE_PASSWORD``, which no output may show).
- ``postgres_url``: a fresh database's URL, per test.
- ``journal_url``: parametrized over the backends, ``[sqlite]`` and ``[postgresql]``: the URL
  of a new journal, as ``--journal`` and ``RAORCH_JOURNAL`` take it (the SQLite file is
  ``tmp_path / "state.db"``).
- ``journal_store``: that journal, open (``raorch.cli.journal.open_store(url, create=True)``),
  closed at the end: a test taking it runs against both backends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pg_service import PostgresServer, postgres_available
from raorch.cli.journal import open_store
from raorch.engine.store import JournalStore

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    missing = postgres_available()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"PostgreSQL is missing, and CI must run the shared journal's tests: {missing}"
            )
        pytest.skip(f"PostgreSQL is missing: {missing}")
    # Not under pytest's basetemp: its parents are 0700 (root's), and the server runs as the
    # postgres user, which must reach its directory.
    directory = Path(tempfile.mkdtemp(prefix="raorch-pg-"))
    server = PostgresServer(directory)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    return postgres.new_database(request.node.name)


@pytest.fixture(params=BACKENDS)
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def journal_store(journal_url: str) -> Iterator[JournalStore]:
    store = open_store(journal_url, create=True)
    yield store
    store.close()
