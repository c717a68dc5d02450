"""Where the commands find the journal: the one place that opens a journal store.

``raorch rollout`` makes it (``create_journal``). The commands that read one (status, history,
show, report, rollback) refuse to run without it, never creating an empty one, and first
record as interrupted the runs a dead controller left without an end (``open_journal``).
``raorch verify`` records its verdicts only where a journal already is (``find_journal``).

The journal is the SQLite file ``$RAORCH_HOME/state.db`` (engine/journal.py); a second backend
(PostgreSQL) is chosen here, and nowhere else: the rest of raorch holds a ``JournalStore``.
"""

from __future__ import annotations

import time
from pathlib import Path

from raorch.engine.journal import JOURNAL_FILE, Journal
from raorch.engine.paths import state_home
from raorch.engine.store import JournalStore
from raorch.models.errors import RefusedError


def journal_file() -> Path:
    """The SQLite journal of the state directory (``Journal.open_default``'s file)."""
    return state_home() / JOURNAL_FILE


def create_journal() -> JournalStore:
    """The state directory's journal, made if there is none yet (``raorch rollout``)."""
    return Journal.open_default()


def find_journal() -> JournalStore | None:
    """The state directory's journal if there is one; never creates one."""
    path = journal_file()
    return Journal(path) if path.exists() else None


def open_journal() -> JournalStore:
    """The state directory's journal, for a command that reads it: a missing one is a refusal
    (never silently created), and a run whose controller died (SIGKILL) is recorded as
    interrupted before anything reads it."""
    journal = find_journal()
    if journal is None:
        raise RefusedError(
            f"there is no journal at {journal_file()} (no raorch journal here: no rollout has "
            "run with this state directory)",
            "run raorch in the directory where raorch rollout ran, or set RAORCH_HOME to the "
            "state directory it used",
        )
    journal.close_interrupted(time.time())
    return journal
