"""What differs between the journal's two SQL dialects, SQLite's and PostgreSQL's; the rest of
the journal is written once for both (its tables: ``engine/journal_tables.py``; its queries
and event handlers: ``engine/journal_sql.py``).

- **Placeholders:** ``?`` (sqlite3) and ``%s`` (psycopg).
- **Type names:** a float (``REAL``, ``DOUBLE PRECISION``), a flag (an ``INTEGER`` 0 or 1, a
  ``BOOLEAN``), a row counter that is the table's key (``AUTOINCREMENT``, an identity).
- **A new row's position** (its place in its rollout's order, docs/architecture.md, "The
  journal store"): SQLite's is one more than the last in the rollout, read in the statement
  (its writers are serialized: ``BEGIN IMMEDIATE`` holds the whole file); PostgreSQL's is drawn
  from one sequence, ``journal_position`` (two writers on two machines would read the same
  last one).
- **A list as a parameter:** PostgreSQL binds one as an array (``host = ANY(%s)``); SQLite
  binds none.

Both take ``INSERT ... ON CONFLICT (key) DO NOTHING | DO UPDATE SET col = excluded.col`` and
``TRUE``/``FALSE`` (SQLite since 3.24 and 3.23), so the journal's writes need no other word.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    placeholder: str
    # Type names, as ``engine/journal_tables.py`` writes them: {real}, {flag}, {false},
    # {serial}, {position}.
    real: str
    flag: str
    false: str  # a flag's default
    serial: str  # a row counter, the table's key: each new row one more
    position: str  # the ``position`` column
    # A new row's position after the last of its rollout in ``{table}``: the rollout is the
    # statement's first parameter (SQLite's ``?1``).
    next_position: str
    # A new rollout's position, after the last of the whole journal.
    next_rollout_position: str
    # Whether a list binds as one parameter (``= ANY(%s)``).
    binds_lists: bool

    def types(self) -> dict[str, str]:
        return {
            "real": self.real,
            "flag": self.flag,
            "false": self.false,
            "serial": self.serial,
            "position": self.position,
        }


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    real="REAL",
    flag="INTEGER",
    false="0",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    # Nullable: added to the tables of journals written before versions (engine/journal_schema
    # .py, version 1), and always given by the statement that inserts a row.
    position="INTEGER",
    next_position="(SELECT COALESCE(MAX(position), 0) + 1 FROM {table} WHERE rollout_id = ?1)",
    next_rollout_position="(SELECT COALESCE(MAX(position), 0) + 1 FROM rollouts)",
    binds_lists=False,
)

POSTGRESQL = Dialect(
    name="postgresql",
    placeholder="%s",
    real="DOUBLE PRECISION",
    flag="BOOLEAN",
    false="false",
    serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    # The sequence is made with the tables (engine/journal_pg_schema.py, version 1); within a
    # transaction its values increase in the order drawn.
    position="BIGINT NOT NULL DEFAULT nextval('journal_position')",
    next_position="nextval('journal_position')",
    next_rollout_position="nextval('journal_position')",
    binds_lists=True,
)
