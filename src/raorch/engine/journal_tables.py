"""The journal's tables, defined once for both backends: each table and index, each column with
the journal version that added it, its type named in neither dialect (``{real}``, ``{flag}``,
... of ``engine/journal_dialect.py``).

Each backend makes them by its own steps (its version bookkeeping and migrations:
``engine/journal_schema.py``, ``engine/journal_pg_schema.py``) from the statements rendered
here: ``create`` (the tables and indexes of a span of versions) and ``added_columns`` (the
columns a version added to an older table, for ``ALTER TABLE ... ADD COLUMN``).

Never change what a released version holds: a change of the schema is a new version (its
tables, columns and indexes marked ``since``) and a step in each backend. SQLite keeps each
statement's text in the file, comments included (``sqlite_master``): a new SQLite journal
holds, byte for byte, the text every raorch of its version wrote
(tests/unit/test_journal_tables.py pins both backends' schema).
"""

from __future__ import annotations

from dataclasses import dataclass

from raorch.engine.journal_dialect import Dialect

# A note's comment starts in this column (or two spaces after a longer definition): the layout
# of the statements as raorch first wrote them.
_NOTE_COLUMN = 35


@dataclass(frozen=True, slots=True)
class Column:
    definition: str  # "name TYPE constraints", the type maybe a dialect's name: {real}, ...
    note: str = ""  # kept in the statement, as a comment
    since: int = 0  # the journal version that added it

    @property
    def name(self) -> str:
        return self.definition.split(" ", 1)[0]

    def sql(self, dialect: Dialect) -> str:
        return self.definition.format_map(dialect.types())


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # the primary key, when not one column's
    since: int = 0

    def create(self, dialect: Dialect, version: int, if_not_exists: bool) -> str:
        lines = [f"    {c.sql(dialect)}" for c in self.columns if c.since <= version]
        notes = [c.note for c in self.columns if c.since <= version]
        if self.key:
            lines.append(f"    PRIMARY KEY ({', '.join(self.key)})")
            notes.append("")
        body = []
        for n, (line, note) in enumerate(zip(lines, notes, strict=True)):
            text = line if n == len(lines) - 1 else line + ","
            body.append(f"{text:<{_NOTE_COLUMN}}  -- {note}" if note else text)
        exists = "IF NOT EXISTS " if if_not_exists else ""
        return f"CREATE TABLE {exists}{self.name} (\n" + "\n".join(body) + "\n)"


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    table: str
    columns: str
    since: int = 0

    def create(self, dialect: Dialect, version: int, if_not_exists: bool) -> str:
        exists = "IF NOT EXISTS " if if_not_exists else ""
        return f"CREATE INDEX {exists}{self.name} ON {self.table} ({self.columns})"


def _positioned(table: str, since: int) -> Index:
    """The index of a table's order (``position``) within each rollout."""
    return Index(f"{table}_position", table, "rollout_id, position", since)


# In the order they are made. Order is a value: ``position`` in every table whose order means
# something (the inventory's waves, the order hosts started, ...), its scope the rollout
# (``rollouts``: the whole journal); a new row's is drawn by the dialect (next_position).
SCHEMA: tuple[Table | Index, ...] = (
    Table(
        "rollouts",
        (
            Column("id TEXT PRIMARY KEY"),
            Column("campaign TEXT NOT NULL", "hash of inventory + playbook content"),
            Column("inventory TEXT NOT NULL"),
            Column("playbook TEXT NOT NULL"),
            Column(
                "playbook_sha TEXT NOT NULL DEFAULT ''",
                "the playbook's content, for rollback's check",
            ),
            Column("waves TEXT NOT NULL", "JSON list of wave names, inventory order"),
            Column("created_at {real} NOT NULL"),
            Column("closed_at {real}", "set when the rollout was rolled back entirely"),
            Column("position {position}", since=1),
        ),
    ),
    Table(
        "waves",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("name TEXT NOT NULL"),
            Column("state TEXT NOT NULL"),
            Column("total INTEGER NOT NULL DEFAULT 0"),
            Column("max_fail_percentage {real} NOT NULL DEFAULT 0"),
            Column("forced {flag} NOT NULL DEFAULT {false}"),
            Column("gate_held {flag}"),
            Column("failure_percentage {real}"),
            Column("started_at {real}"),
            Column("finished_at {real}"),
            Column("size INTEGER", since=1),  # NULL: the wave's size was not recorded
            Column("position {position}", since=1),
        ),
        key=("rollout_id", "name"),
    ),
    Table(
        "hosts",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("wave TEXT NOT NULL"),
            Column("outcome TEXT", "NULL while in flight (or killed in flight)"),
            Column("stage TEXT"),
            Column("reason TEXT"),
            Column("changes INTEGER NOT NULL DEFAULT 0"),
            Column("attempts INTEGER NOT NULL DEFAULT 0"),
            Column("started_at {real}"),
            Column("finished_at {real}"),
            Column("duration {real}"),
            Column("position {position}", since=1),
        ),
        key=("rollout_id", "host"),
    ),
    Table(
        "snapshots",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("taken_at {real} NOT NULL"),
            Column("data TEXT NOT NULL"),
        ),
        key=("rollout_id", "host"),
    ),
    Table(
        "applied",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("recorded_at {real} NOT NULL"),
            Column("data TEXT NOT NULL", "the changes raorch made, JSON (for rollback and show)"),
            Column("position {position}", since=1),
        ),
        key=("rollout_id", "host"),
    ),
    Table(
        "timeline",
        (
            Column("seq {serial}"),
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("kind TEXT NOT NULL", "rollout | rollback | verify"),
            Column("outcome TEXT NOT NULL"),
            Column("stage TEXT"),
            Column("reason TEXT"),
            Column("at {real} NOT NULL"),
            Column("duration {real}"),
        ),
    ),
    Table(
        "rollbacks",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("outcome TEXT NOT NULL", "rolled_back | conflict | failed"),
            Column("stage TEXT"),
            Column("reason TEXT"),
            Column("details TEXT", "JSON list: a conflict's differences"),
            Column("at {real} NOT NULL"),
            Column("position {position}", since=1),
        ),
        key=("rollout_id", "host"),
    ),
    Index("timeline_host", "timeline", "rollout_id, host"),
    # The content a rollout ran with: revision 1 when it began, one more each time the operator
    # chose to go on with a changed inventory or playbook (rollout --continue). Rollback reads
    # the playbook from here, never from the file.
    Table(
        "contents",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("revision INTEGER NOT NULL"),
            Column("campaign TEXT NOT NULL"),
            Column("inventory_sha TEXT NOT NULL"),
            Column("playbook TEXT NOT NULL", "its path then"),
            Column("playbook_sha TEXT NOT NULL"),
            Column(
                "playbook_json TEXT NOT NULL",
                "the checked playbook ('' when recorded by an older raorch)",
            ),
            Column(
                "inventory_json TEXT NOT NULL",
                "domains, waves, hosts (for the diff shown on a change)",
            ),
            Column("note TEXT NOT NULL"),
            Column("at {real} NOT NULL"),
        ),
        key=("rollout_id", "revision"),
    ),
    # The revision(s) each host was applied with (recorded with its snapshot, before any write).
    Table(
        "host_contents",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("revision INTEGER NOT NULL"),
        ),
        key=("rollout_id", "host", "revision"),
    ),
    # How each host was reached (address, connection, credential reference; never a secret), so
    # that a rollback reaches a host the inventory no longer names.
    Table(
        "targets",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("data TEXT NOT NULL"),
        ),
        key=("rollout_id", "host"),
    ),
    Table(
        "runs",
        (
            Column("seq {serial}"),
            Column("rollout_id TEXT NOT NULL"),
            Column("kind TEXT NOT NULL"),
            Column("wave TEXT"),  # never written (NULL): the runs of a wave are in ``waves``
            Column("forced {flag} NOT NULL DEFAULT {false}"),
            Column("started_at {real} NOT NULL"),
            Column("finished_at {real}"),
            Column("interrupted {flag} NOT NULL DEFAULT {false}"),
            Column("account TEXT", since=1),  # NULL for the runs of an older raorch
        ),
    ),
    Table(
        "platforms",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column(
                "caption TEXT NOT NULL",
                "Win32_OperatingSystem.Caption, as the host reported it",
            ),
            Column("os_version TEXT NOT NULL"),
            Column("profile TEXT NOT NULL", "legacy | modern | '' (not understood)"),
        ),
        key=("rollout_id", "host"),
    ),
    Table(
        "verifications",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("host TEXT NOT NULL"),
            Column("outcome TEXT NOT NULL", "compliant | drifted | refused | unreachable | failed"),
            Column("stage TEXT"),
            Column("reason TEXT"),
            Column("details TEXT", "JSON list: each difference, expected vs found"),
            Column("at {real} NOT NULL"),
            Column("position {position}", since=1),
        ),
        key=("rollout_id", "host"),
    ),
    Index("rollouts_position", "rollouts", "position", since=1),
    *(_positioned(t, 1) for t in ("waves", "hosts", "applied", "rollbacks", "verifications")),
    # What the broker last said of each site of a run through workers (raorch rollout
    # --broker): its workers, its queued tasks, since when it has had none.
    Table(
        "sites",
        (
            Column("rollout_id TEXT NOT NULL"),
            Column("site TEXT NOT NULL"),
            Column("workers INTEGER NOT NULL", "consumers of the site's queue"),
            Column("queued INTEGER NOT NULL", "tasks waiting in it"),
            Column("no_worker_since {real}", "set once it had no worker for --no-worker-after s"),
            Column("at {real} NOT NULL"),
            Column("position {position}"),
        ),
        key=("rollout_id", "site"),
        since=2,
    ),
)


def create(dialect: Dialect, upto: int, since: int = 0, if_not_exists: bool = False) -> list[str]:
    """The statements making the tables and indexes that versions ``since`` to ``upto`` added,
    each table with its columns of versions up to ``upto``, in the order they are made."""
    return [
        item.create(dialect, upto, if_not_exists) for item in SCHEMA if since <= item.since <= upto
    ]


def added_columns(version: int) -> list[tuple[str, Column]]:
    """The columns ``version`` added to the tables of earlier versions: (table, column), in the
    order they are added (which is, in SQLite, their order in the table's statement)."""
    return [
        (item.name, column)
        for item in SCHEMA
        if isinstance(item, Table) and item.since < version
        for column in item.columns
        if column.since == version
    ]
