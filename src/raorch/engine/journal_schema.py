"""The SQLite journal's schema, by version (``PRAGMA user_version``), and its migrations.

Version 0 is every journal written before versions were kept: the tables of ``_V0_TABLES``
(the statements of that raorch, unchanged), of which an older journal may lack a table or one
of the two columns added later (``runs.account``, ``waves.size``). Each later version is one
step of ``_STEPS``; a journal is brought to ``SCHEMA_VERSION`` when it is opened, all steps in
one transaction: a process killed in the middle leaves it as it was, and a second process
opening it at the same moment waits, then finds it migrated. A new journal is version 0
without tables, and goes through the same steps.

A journal of a newer version is refused, never opened: this raorch does not know what the
newer raorch records, and would write rows that one reads wrong.

Adding a version: append a step (never change a released one) and say in it what it adds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from raorch.models.errors import RefusedError

# The tables as raorch created them before versions were kept (version 0). Never edit: a
# change of the schema is a new step below.
_V0_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,          -- hash of inventory + playbook content
    inventory TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_sha TEXT NOT NULL DEFAULT '',  -- the playbook's content, for rollback's check
    waves TEXT NOT NULL,             -- JSON list of wave names, inventory order
    created_at REAL NOT NULL,
    closed_at REAL                   -- set when the rollout was rolled back entirely
);
CREATE TABLE IF NOT EXISTS waves (
    rollout_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    max_fail_percentage REAL NOT NULL DEFAULT 0,
    forced INTEGER NOT NULL DEFAULT 0,
    gate_held INTEGER,
    failure_percentage REAL,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (rollout_id, name)
);
CREATE TABLE IF NOT EXISTS hosts (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    wave TEXT NOT NULL,
    outcome TEXT,                    -- NULL while in flight (or killed in flight)
    stage TEXT,
    reason TEXT,
    changes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    duration REAL,
    PRIMARY KEY (rollout_id, host)
);
CREATE TABLE IF NOT EXISTS snapshots (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    taken_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (rollout_id, host)
);
CREATE TABLE IF NOT EXISTS applied (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    data TEXT NOT NULL,              -- the changes raorch made, JSON (for rollback and show)
    PRIMARY KEY (rollout_id, host)
);
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,              -- rollout | rollback | verify
    outcome TEXT NOT NULL,
    stage TEXT,
    reason TEXT,
    at REAL NOT NULL,
    duration REAL
);
CREATE TABLE IF NOT EXISTS rollbacks (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    outcome TEXT NOT NULL,           -- rolled_back | conflict | failed
    stage TEXT,
    reason TEXT,
    details TEXT,                    -- JSON list: a conflict's differences
    at REAL NOT NULL,
    PRIMARY KEY (rollout_id, host)
);
CREATE INDEX IF NOT EXISTS timeline_host ON timeline (rollout_id, host);
-- The content a rollout ran with: revision 1 when it began, one more each time the operator
-- chose to go on with a changed inventory or playbook (rollout --continue). Rollback reads the
-- playbook from here, never from the file.
CREATE TABLE IF NOT EXISTS contents (
    rollout_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    campaign TEXT NOT NULL,
    inventory_sha TEXT NOT NULL,
    playbook TEXT NOT NULL,          -- its path then
    playbook_sha TEXT NOT NULL,
    playbook_json TEXT NOT NULL,     -- the checked playbook ('' when recorded by an older raorch)
    inventory_json TEXT NOT NULL,    -- domains, waves, hosts (for the diff shown on a change)
    note TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (rollout_id, revision)
);
-- The revision(s) each host was applied with (recorded with its snapshot, before any write).
CREATE TABLE IF NOT EXISTS host_contents (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, host, revision)
);
-- How each host was reached (address, connection, credential reference; never a secret), so
-- that a rollback reaches a host the inventory no longer names.
CREATE TABLE IF NOT EXISTS targets (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (rollout_id, host)
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    wave TEXT,
    forced INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    finished_at REAL,
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS platforms (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    caption TEXT NOT NULL,           -- Win32_OperatingSystem.Caption, as the host reported it
    os_version TEXT NOT NULL,
    profile TEXT NOT NULL,           -- legacy | modern | '' (not understood)
    PRIMARY KEY (rollout_id, host)
);
CREATE TABLE IF NOT EXISTS verifications (
    rollout_id TEXT NOT NULL,
    host TEXT NOT NULL,
    outcome TEXT NOT NULL,           -- compliant | drifted | refused | unreachable | failed
    stage TEXT,
    reason TEXT,
    details TEXT,                    -- JSON list: each difference, expected vs found
    at REAL NOT NULL,
    PRIMARY KEY (rollout_id, host)
);
"""

# The tables whose order means something (the inventory's waves, the order hosts started, ...)
# and which kept it in SQLite's rowid only: a copy of the file (VACUUM, .dump) or another
# backend need not keep rowids. ``position`` makes the order a value; the scope of each is the
# rollout (``rollouts``: the whole journal).
POSITIONED = ("rollouts", "waves", "hosts", "applied", "rollbacks", "verifications")


def _statements(script: str) -> list[str]:
    """The statements of a script, one by one (``executescript`` would commit the migration's
    transaction before running them)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    if column not in _columns(db, table):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _v1_positions(db: sqlite3.Connection) -> None:
    """Version 1: version 0 complete (its tables, and the two columns an older journal lacks),
    then a ``position`` in every table whose order means something: the rowid order of the
    rows there (their order until now), and one more than the last for each new row."""
    for statement in _statements(_V0_TABLES):
        db.execute(statement)
    _add_column(db, "runs", "account", "TEXT")  # NULL for the runs of an older raorch
    _add_column(db, "waves", "size", "INTEGER")  # NULL: the wave's size was not recorded
    for table in POSITIONED:
        _add_column(db, table, "position", "INTEGER")
        db.execute(f"UPDATE {table} SET position = rowid WHERE position IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS rollouts_position ON rollouts (position)")
    for table in POSITIONED[1:]:
        db.execute(f"CREATE INDEX IF NOT EXISTS {table}_position ON {table} (rollout_id, position)")


_STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1_positions,)

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
