"""Where the commands find the journal: the one place that chooses a backend and opens a store.

The journal is named by a URL, from ``--journal URL`` on the commands that open one, else the
environment's ``RAORCH_JOURNAL``, else the SQLite file of the state directory
(``$RAORCH_HOME/state.db``, engine/journal.py):

- ``postgresql://USER@HOST[:PORT]/DATABASE`` (or ``postgres://``, any libpq URL): a journal
  shared by several controllers and workers (engine/journal_pg.py);
- ``sqlite:///ABSOLUTE/PATH``: a SQLite journal elsewhere than the state directory.

``raorch rollout`` makes the journal (``create_journal``). The commands that read one (status,
history, show, report, rollback) refuse to run without it, never creating an empty one, and
first record as interrupted the runs a dead controller left without an end (``open_journal``).
``raorch verify`` records its verdicts only where a journal already is (``find_journal``).
``open_store(url)`` opens an existing journal by URL (what a worker holds). The rest of raorch
holds a ``JournalStore`` and never names a backend. A URL is never shown with its password.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import cast

from raorch.engine.journal import JOURNAL_FILE, Journal
from raorch.engine.journal_url import mask_url, scrub
from raorch.engine.paths import state_home
from raorch.engine.store import JournalReader, JournalStore, RolloutRow, WorkerJournal
from raorch.models.errors import InputError, Location, Problem, RefusedError

JOURNAL_ENV = "RAORCH_JOURNAL"
JOURNAL_OPTION = "--journal"
URL_FORMS = "postgresql://USER@HOST[:PORT]/DATABASE or sqlite:///ABSOLUTE/PATH"
_POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite://"


class Backend(Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True, slots=True)
class JournalChoice:
    """The journal a command uses, and where that choice came from (for its messages)."""

    backend: Backend
    url: str  # as given: may hold a password, never shown (``shown``)
    source: str  # "--journal", "RAORCH_JOURNAL", or "" (the state directory's file)
    path: Path | None = None  # the SQLite file

    @property
    def shown(self) -> str:
        return str(self.path) if self.path is not None else mask_url(self.url)


def journal_file() -> Path:
    """The SQLite journal of the state directory (``Journal.open_default``'s file)."""
    return state_home() / JOURNAL_FILE


def _bad_url(source: str, url: str, what: str) -> InputError:
    return InputError([Problem(Location(source), f"{what}: {mask_url(url)!r}", f"use {URL_FORMS}")])


def choose_journal(url: str | None = None) -> JournalChoice:
    """The journal named by ``url`` (``--journal``), else by ``RAORCH_JOURNAL``, else the state
    directory's SQLite file. A URL of no known form is invalid input (exit 2)."""
    source = JOURNAL_OPTION
    if url is None:
        url = os.environ.get(JOURNAL_ENV) or None
        source = JOURNAL_ENV
    if url is None:
        path = journal_file()
        return JournalChoice(Backend.SQLITE, f"{_SQLITE_SCHEME}{path}", "", path)
    text = url.strip()
    if text.startswith(_SQLITE_SCHEME):
        path = Path(text[len(_SQLITE_SCHEME) :])
        if not path.is_absolute() or path.name in ("", ".", ".."):
            raise _bad_url(source, text, "a SQLite journal URL names an absolute file path")
        return JournalChoice(Backend.SQLITE, text, source, path)
    if text.startswith(_POSTGRESQL_SCHEMES):
        _check_postgresql_url(source, text)
        return JournalChoice(Backend.POSTGRESQL, text, source)
    raise _bad_url(source, text, "not a journal URL")


def _check_postgresql_url(source: str, url: str) -> None:
    """The URL as libpq reads it (psycopg's parser), before any connection."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise RefusedError(
            f"the journal {mask_url(url)} is on PostgreSQL, and this raorch was installed "
            "without its PostgreSQL driver",
            "install it: pip install 'raorch[postgresql]'",
        ) from None
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as error:
        raise _bad_url(
            source, url, f"a PostgreSQL URL libpq cannot read ({scrub(str(error).strip(), url)})"
        ) from None
    ports = str(params.get("port") or "")
    if ports and not all(p.strip().isdigit() for p in ports.split(",")):
        raise _bad_url(source, url, "the port of a PostgreSQL URL is a number")


def _open(choice: JournalChoice, create: bool) -> JournalStore | None:
    """The store chosen; None when there is no journal there and ``create`` is not set."""
    if choice.backend is Backend.SQLITE:
        assert choice.path is not None
        if not create and not choice.path.exists():
            return None
        return Journal(choice.path)
    from raorch.engine.journal_pg import JournalMissing, PgJournal

    try:
        return PgJournal(choice.url, create=create)
    except JournalMissing:
        return None


def _missing(choice: JournalChoice) -> RefusedError:
    if not choice.source:
        return RefusedError(
            f"there is no journal at {choice.shown} (no raorch journal here: no rollout has "
            "run with this state directory)",
            "run raorch in the directory where raorch rollout ran, or set RAORCH_HOME to the "
            "state directory it used",
        )
    where = "at" if choice.backend is Backend.SQLITE else "in"
    return RefusedError(
        f"there is no journal {where} {choice.shown} (named by {choice.source}; no rollout "
        "has run with it)",
        f"point {choice.source} at the journal the rollouts used (raorch rollout makes it)",
    )


def open_store(url: str | None = None, *, create: bool = False) -> JournalStore:
    """The journal store at ``url`` (None: ``RAORCH_JOURNAL``, else the state directory's
    file). A missing journal is refused unless ``create``; nothing else is done to it (what a
    worker opens: the controller made the journal and closes its interrupted runs)."""
    choice = choose_journal(url)
    store = _open(choice, create)
    if store is None:
        raise _missing(choice)
    return store


def create_journal(url: str | None = None) -> JournalStore:
    """The journal, made if there is none yet (``raorch rollout``)."""
    return open_store(url, create=True)


def find_journal(url: str | None = None) -> JournalStore | None:
    """The journal if there is one; never creates one."""
    return _open(choose_journal(url), create=False)


def open_journal(url: str | None = None) -> JournalStore:
    """The journal, for a command that reads it: a missing one is a refusal (never silently
    created), and a run whose controller died (SIGKILL) is recorded as interrupted before
    anything reads it."""
    journal = open_store(url)
    journal.close_interrupted(time.time())
    return journal


def find_rollout(journal: JournalReader, rollout_id: str | None) -> RolloutRow:
    """The rollout a command names (``None``: the last one), or a refusal that lists the
    latest ones: every command that reads one rollout says the same."""
    row = journal.last_rollout() if rollout_id is None else journal.rollout(rollout_id)
    if row is not None:
        return row
    if rollout_id is None:
        raise RefusedError(
            f"the journal {journal.location} holds no rollout yet",
            "start one with raorch rollout --inventory FILE --wave NAME",
        )
    known = [r.id for r in journal.rollouts()][-5:]
    raise RefusedError(
        f"there is no rollout {rollout_id!r} in the journal {journal.location}",
        "the latest rollouts are: " + ", ".join(reversed(known)) + " (all: raorch history)"
        if known
        else "the journal holds no rollout yet",
    )


def worker_journal(url: str | None = None) -> WorkerJournal:
    """The journal a worker (``raorch worker``) shares with its controllers, chosen as every
    command's (``--journal``, else ``RAORCH_JOURNAL``, else the state directory's file), made
    if there is none yet (a worker may start before the first rollout). Both backends hold
    the workers' per-host locks (``host_lock``)."""
    store = open_store(url, create=True)
    if not hasattr(store, "host_lock"):  # pragma: no cover - every backend has them
        store.close()
        raise RefusedError(f"the journal {store.location} cannot serve workers")
    return cast(WorkerJournal, store)
