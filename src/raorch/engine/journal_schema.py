"""The SQLite journal's schema, by version (``PRAGMA user_version``), and its migrations.

Version 0 is every journal written before versions were kept: the tables of version 0
(``engine/journal_tables.py``, rendered for SQLite: the statements of that raorch, byte for
byte), of which an older journal may lack a table or one of the two columns added later
(``runs.account``, ``waves.size``). Each later version is one
step of ``_STEPS``; a journal is brought to ``SCHEMA_VERSION`` when it is opened, all steps in
one transaction: a process killed in the middle leaves it as it was, and a second process
opening it at the same moment waits, then finds it migrated. A new journal is version 0
without tables, and goes through the same steps.

A journal of a newer version is refused, never opened: this raorch does not know what the
newer raorch records, and would write rows that one reads wrong.

Adding a version: mark what it adds in ``engine/journal_tables.py``, append a step here and in
``engine/journal_pg_schema.py`` (never change a released one), and say in it what it adds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from raorch.engine.journal_dialect import SQLITE
from raorch.engine.journal_tables import added_columns, create
from raorch.models.errors import RefusedError

# Where SQLite keeps the version a second time (beside PRAGMA user_version).
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

# The tables whose order means something (the inventory's waves, the order hosts started, ...)
# and which kept it in SQLite's rowid only until version 1 gave them a ``position``: a copy of
# the file (VACUUM, .dump) or another backend need not keep rowids.
POSITIONED = tuple(table for table, column in added_columns(1) if column.name == "position")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _add_column(db: sqlite3.Connection, table: str, column: str, definition: str) -> None:
    """Add a column, unless an older raorch added it already (runs.account, waves.size)."""
    if column not in _columns(db, table):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


def _v1_positions(db: sqlite3.Connection) -> None:
    """Version 1: version 0 complete (its tables, and the two columns an older journal lacks),
    then a ``position`` in every table whose order means something: the rowid order of the
    rows there (their order until now), and one more than the last for each new row."""
    db.execute(_META)
    for statement in create(SQLITE, upto=0, if_not_exists=True):
        db.execute(statement)
    for table, column in added_columns(1):  # runs.account, waves.size, the positions
        _add_column(db, table, column.name, column.sql(SQLITE))
    for table in POSITIONED:
        db.execute(f"UPDATE {table} SET position = rowid WHERE position IS NULL")
    for statement in create(SQLITE, upto=1, since=1, if_not_exists=True):  # the positions'
        db.execute(statement)


def _v2_sites(db: sqlite3.Connection) -> None:
    """Version 2: what the broker last said of each site of a run through workers (``raorch
    rollout --broker``): its workers, its queued tasks, since when it has had none."""
    for statement in create(SQLITE, upto=2, since=2, if_not_exists=True):
        db.execute(statement)


_STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1_positions, _v2_sites)

SCHEMA_VERSION = len(_STEPS)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise RefusedError(
            f"the journal {path} was written by a newer raorch (journal version {version}; "
            f"this raorch reads versions up to {SCHEMA_VERSION}); it was left as it is",
            "run the raorch version that wrote it (or a newer one: pip install --upgrade "
            "raorch), or set RAORCH_HOME to another state directory",
        )


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the journal to ``SCHEMA_VERSION`` (``db`` in autocommit mode: no transaction
    open); refuse one of a newer version. A journal already current is only read."""
    version = schema_version(db)
    _refuse_newer(path, version)
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)  # another process may have migrated it meanwhile
        _refuse_newer(path, version)
        for step in _STEPS[version:]:
            step(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
            (str(SCHEMA_VERSION),),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
