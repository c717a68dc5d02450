"""The journal's tables as each backend stores them, pinned: a file or database written by
this raorch must be the one an older raorch wrote and reads, and the other way round.

- SQLite: ``sqlite_master`` as it is stored (every statement's text, comments included, in the
  order made), the version and ``meta``; for a new journal and for one written before versions
  (fixtures/journal-v0.db) once migrated.
- PostgreSQL: the catalog (columns with their types, nullability and defaults, constraints,
  indexes, sequences) and ``schema_version``.

The expected texts are fixtures/journal-schema-<backend>.txt. A new version changes them on
purpose: rewrite them with ``python tests/unit/test_journal_tables.py`` (PostgreSQL installed,
as for the tests), and read the difference."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from raorch.cli.journal import open_store

FIXTURES = Path(__file__).parent / "fixtures"


def sqlite_schema(path: Path) -> str:
    db = sqlite3.connect(path)  # crafted: the stored schema, below what the store reads
    try:
        lines = [f"user_version {db.execute('PRAGMA user_version').fetchone()[0]}"]
        meta = db.execute("SELECT key, value FROM meta ORDER BY key")
        lines += [f"meta {key} = {value}" for key, value in meta]
        for kind, name, table, sql in db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        ):
            lines.append(f"-- {kind} {name} on {table}")
            lines.append(str(sql))
    finally:
        db.close()
    return "\n".join(lines) + "\n"


def postgresql_schema(url: str) -> str:
    import psycopg  # the driver is an optional extra (the SQLite tests run without it)

    queries = {
        "column": "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
        "column_default, is_identity, identity_generation FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
        "constraint": "SELECT conrelid::regclass::text, conname, contype, "
        "pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2",
        "index": "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() ORDER BY 1, 2",
        "sequence": "SELECT sequencename, data_type, start_value, increment_by, cycle "
        "FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1",
        "schema_version": "SELECT version FROM schema_version",
    }
    lines = []
    with psycopg.connect(url, autocommit=True) as db:  # crafted: the catalog
        for what, sql in queries.items():
            lines += [f"{what} {' | '.join(map(str, row))}" for row in db.execute(sql)]
    return "\n".join(lines) + "\n"


def expected(backend: str) -> str:
    return (FIXTURES / f"journal-schema-{backend}.txt").read_text(encoding="utf-8")


def new_sqlite_journal(directory: Path) -> Path:
    path = directory / "new" / "state.db"
    open_store(f"sqlite://{path}", create=True).close()
    return path


def migrated_sqlite_journal(directory: Path) -> Path:
    path = directory / "old" / "state.db"
    path.parent.mkdir(mode=0o700)
    shutil.copyfile(FIXTURES / "journal-v0.db", path)
    open_store(f"sqlite://{path}", create=True).close()
    return path


def test_a_new_sqlite_journal_is_the_file_every_raorch_of_its_version_writes(
    tmp_path: Path,
) -> None:
    assert sqlite_schema(new_sqlite_journal(tmp_path)) == expected("sqlite")


def test_a_migrated_sqlite_journal_is_a_new_one(tmp_path: Path) -> None:
    assert sqlite_schema(migrated_sqlite_journal(tmp_path)) == expected("sqlite")


def test_a_new_postgresql_journal_is_the_database_every_raorch_of_its_version_makes(
    postgres_url: str,
) -> None:
    open_store(postgres_url, create=True).close()
    assert postgresql_schema(postgres_url) == expected("postgresql")


def rewrite() -> None:
    """Rewrite the expected texts from this raorch (a new version, on purpose), on a server of
    its own (tests/pg_service.py)."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from pg_service import PostgresServer

    with tempfile.TemporaryDirectory() as tmp:
        (FIXTURES / "journal-schema-sqlite.txt").write_text(
            sqlite_schema(new_sqlite_journal(Path(tmp))), encoding="utf-8"
        )
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="raorch-pg-")))
    try:
        server.start()
        url = server.new_database("schema")
        open_store(url, create=True).close()
        (FIXTURES / "journal-schema-postgresql.txt").write_text(
            postgresql_schema(url), encoding="utf-8"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    rewrite()
