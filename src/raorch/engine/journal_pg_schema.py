"""The PostgreSQL journal's schema, by version (table ``schema_version``), and its migrations.

The same journal as SQLite's (``engine/journal_schema.py``): the same tables and columns
(``engine/journal_tables.py``, rendered in PostgreSQL's types: ``engine/journal_dialect.py``),
the same versions (a PostgreSQL journal of version N holds what a SQLite journal of version N
holds), and the same rules. There is no version 0 here: PostgreSQL journals began at
version 1, so a database without ``schema_version`` holds no journal, and a new journal goes
through every step from the first.

- Order is a value: ``position``, one sequence (``journal_position``) for every table whose
  order means something, drawn when a row is inserted. A sequence, not ``MAX(position) + 1``:
  two writers on two machines inserting at once would read the same maximum. Within one
  transaction its values increase in the order drawn (the inventory's waves keep their order).
- The first snapshot of a host wins by the primary key of ``snapshots`` and
  ``INSERT ... ON CONFLICT DO NOTHING`` (``engine/journal_sql.py``), never by a read before the
  write: of two writers committing a snapshot for the same host at once, the second waits for
  the first's commit, then inserts nothing.
- Opening a journal brings it to ``SCHEMA_VERSION``, every step in one transaction (DDL is
  transactional in PostgreSQL: a process killed in the middle leaves it as it was), behind an
  advisory lock, so that a second process opening it at the same moment waits, then finds it
  done. A journal of a newer raorch is refused and left as it is.

Adding a version: the same as SQLite's (engine/journal_schema.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raorch.engine.journal_dialect import POSTGRESQL
from raorch.engine.journal_tables import create
from raorch.models.errors import RefusedError

if TYPE_CHECKING:  # the driver is an optional extra: this module is given a connection
    from psycopg import Connection

    _Db = Connection[Any]


def _v1_tables(db: _Db) -> None:
    """Version 1: every table of the journal at version 1, with its positions (drawn from the
    sequence ``journal_position``, made first), and two indexes of PostgreSQL's own (a shared
    journal's rollouts looked up by campaign, its runs by rollout; SQLite journals never had
    them)."""
    db.execute("CREATE SEQUENCE journal_position")
    for statement in create(POSTGRESQL, upto=1):
        db.execute(statement)
    db.execute("CREATE INDEX rollouts_campaign ON rollouts (campaign)")
    db.execute("CREATE INDEX runs_rollout ON runs (rollout_id)")


def _v2_sites(db: _Db) -> None:
    """Version 2 (as SQLite's): what the broker last said of each site of a run through
    workers: its workers, its queued tasks, since when it has had none."""
    for statement in create(POSTGRESQL, upto=2, since=2):
        db.execute(statement)


_STEPS: tuple[Callable[[_Db], None], ...] = (_v1_tables, _v2_sites)

SCHEMA_VERSION = len(_STEPS)

# The advisory lock that serializes migrations of one database (a key of raorch's own).
MIGRATION_LOCK = 0x72616F7263685F73


class JournalMissing(Exception):
    """The database holds no raorch journal (a command that reads one does not make one)."""


def schema_version(db: _Db) -> int | None:
    """The journal's version; None when the database holds no journal."""
    row = db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = db.execute("SELECT version FROM schema_version").fetchone()
    return 0 if found is None else int(found[0])


def _refuse_newer(location: str, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise RefusedError(
            f"the journal {location} was written by a newer raorch (journal version {version}; "
            f"this raorch reads versions up to {SCHEMA_VERSION}); it was left as it is",
            "run the raorch version that wrote it (or a newer one: pip install --upgrade "
            "raorch), or point --journal (or RAORCH_JOURNAL) at another database",
        )


def migrate(db: _Db, location: str, create: bool) -> None:
    """Bring the journal to ``SCHEMA_VERSION`` (``db`` in autocommit mode); refuse one of a
    newer version. Without ``create``, a database holding no journal raises
    ``JournalMissing`` and is left untouched. A journal already current is only read."""
    version = schema_version(db)
    if version is None and not create:
        raise JournalMissing(location)
    _refuse_newer(location, version)
    if version == SCHEMA_VERSION:
        return
    # The lock is taken before the transaction begins, not in it: a transaction that began
    # before another process committed the tables may not see them in the catalog even after
    # it waited for that process (its catalog caches are refreshed when a transaction begins).
    db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with db.transaction():
            version = schema_version(db)  # another process may have migrated it meanwhile
            _refuse_newer(location, version)
            if version is None:
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                version = 0
            for step in _STEPS[version:]:
                step(db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    finally:
        with contextlib.suppress(Exception):  # a lost connection released it already
            db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
