"""The journal store: what the engine writes and what the views read, whatever keeps it.

Two sides, each a ``Protocol`` built from the calls the code makes:

- ``JournalReader``, the read side: ``RolloutView.from_journal`` (``raorch status``), history
  and show, the change report, rollback's choices, the resume logic of the engine; and
  ``is_running`` (whether a live process holds a rollout's run lock).
- ``JournalWriter``, the write side: the engine's event subscriber (``record``), the snapshot
  committed before a host's first write, the rollout's records (content revisions, targets,
  forced waves, closing), verify's verdicts; and the run lock (``lock(rollout_id)``: one run
  at a time per rollout).

``JournalStore`` is both, with ``close_interrupted`` (a run whose controller died ends as
interrupted): what the engine (``Rollout``, ``Rollback``) and the commands that run it hold.
The rows below are the values that cross the seam, the same for every backend.
``raorch.engine.journal.Journal`` (SQLite, one file in the state directory) is the first
implementation; a second one (PostgreSQL) implements the same three protocols.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from raorch.models.events import Event, RunKind
from raorch.models.outcomes import Outcome, Stage, WaveState


@dataclass(frozen=True, slots=True)
class RolloutRow:
    id: str
    campaign: str
    inventory: str
    playbook: str
    waves: tuple[str, ...]
    created_at: float
    closed_at: float | None
    playbook_sha: str = ""


@dataclass(frozen=True, slots=True)
class ContentRow:
    """One revision of a rollout's content (table ``contents``)."""

    rollout_id: str
    revision: int
    campaign: str
    inventory_sha: str
    playbook: str
    playbook_sha: str
    playbook_json: str  # '' when unknown (a rollout begun by an older raorch)
    inventory_json: str
    note: str
    at: float


@dataclass(frozen=True, slots=True)
class Content:
    """What a rollout runs with, as the journal keeps it (``ContentRow`` without the ids)."""

    campaign: str
    inventory_sha: str
    playbook: str
    playbook_sha: str
    playbook_json: str
    inventory_json: str


@dataclass(frozen=True, slots=True)
class WaveRow:
    rollout_id: str
    name: str
    state: WaveState
    total: int
    max_fail_percentage: float
    forced: bool
    gate_held: bool | None
    failure_percentage: float | None
    started_at: float | None
    finished_at: float | None
    size: int | None = None  # hosts in the wave (None: recorded by an older raorch)


@dataclass(frozen=True, slots=True)
class HostRow:
    rollout_id: str
    host: str
    wave: str
    outcome: Outcome | None
    stage: Stage | None
    reason: str | None
    changes: int
    attempts: int
    started_at: float | None
    finished_at: float | None
    duration: float | None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of a command against a rollout (one ``RolloutStarted`` .. ``RolloutFinished``)."""

    seq: int
    rollout_id: str
    kind: RunKind
    forced: bool
    started_at: float
    finished_at: float | None  # None while it runs, or when the controller died
    interrupted: bool
    account: str = ""  # who ran it (operator_account()); "" in a journal of an older raorch


@dataclass(frozen=True, slots=True)
class TimelineRow:
    kind: RunKind
    outcome: Outcome
    stage: Stage | None
    reason: str | None
    at: float
    duration: float | None


@dataclass(frozen=True, slots=True)
class PlatformRow:
    """The Windows a host reported (its facts), recorded when it finished a rollout run,
    refused hosts included (they have no snapshot)."""

    host: str
    caption: str
    os_version: str
    profile: str  # "legacy", "modern", or "" when raorch did not understand the host


@dataclass(frozen=True, slots=True)
class RollbackRow:
    host: str
    outcome: Outcome  # rolled_back | conflict | failed
    stage: Stage | None
    reason: str | None
    details: tuple[str, ...]  # a conflict's differences
    at: float


@dataclass(frozen=True, slots=True)
class VerifyRow:
    """A host's latest ``raorch verify`` verdict against a rollout's inventory and playbook."""

    host: str
    outcome: Outcome
    stage: Stage | None
    reason: str | None
    details: tuple[str, ...]  # each difference, "item: expected X, found Y"
    at: float


def operator_account() -> str:
    """Who runs this process, as ``user@machine``: the journal records it with every run
    (the change report's "by whom"). Never fails: a process without a user name (a container
    with an unknown uid) is recorded as ``uid N``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class JournalReader(Protocol):
    """The read side: every question the views, the report and the engine ask the journal.
    Reads never block a writer (``raorch status`` in another terminal while a rollout runs)."""

    @property
    def location(self) -> str:
        """Where the journal is, for messages (the SQLite file's path); never a secret."""
        ...

    def close(self) -> None: ...

    # rollouts
    def rollout(self, rollout_id: str) -> RolloutRow | None: ...

    def rollouts(self) -> list[RolloutRow]:
        """Every rollout, oldest first."""
        ...

    def find_rollout(self, campaign: str) -> RolloutRow | None:
        """The open rollout of this campaign (inventory + playbook content), if any."""
        ...

    def latest_rollout_of(self, campaign: str) -> RolloutRow | None:
        """The most recent rollout of a campaign, open or not."""
        ...

    def last_rollout(self) -> RolloutRow | None:
        rows = self.rollouts()
        return rows[-1] if rows else None

    def open_rollouts(self) -> list[RolloutRow]:
        """Rollouts not rolled back entirely, oldest first."""
        return [r for r in self.rollouts() if r.closed_at is None]

    def rollout_closed(self, rollout_id: str) -> bool:
        row = self.rollout(rollout_id)
        return row is not None and row.closed_at is not None

    # the content a rollout ran with, and how its hosts are reached
    def contents(self, rollout_id: str) -> list[ContentRow]:
        """The revisions of a rollout's content, oldest first."""
        ...

    def current_revision(self, rollout_id: str) -> int | None: ...

    def host_revisions(self, rollout_id: str) -> dict[str, list[int]]:
        """host -> the revisions it was applied with, oldest first."""
        ...

    def targets(self, rollout_id: str) -> dict[str, str]:
        """host -> how it was reached (JSON; never a secret)."""
        ...

    # waves, hosts, runs
    def waves(self, rollout_id: str) -> list[WaveRow]:
        """The rollout's waves in the inventory's order (later revisions' waves after)."""
        ...

    def hosts(self, rollout_id: str, wave: str | None = None) -> list[HostRow]:
        """The hosts that started, in the order they first started."""
        ...

    def has_hosts(self, rollout_id: str) -> bool: ...

    def runs(self, rollout_id: str) -> list[RunRow]:
        """The runs of a rollout, oldest first."""
        ...

    def unfinished_runs(self) -> list[str]:
        """Rollouts with a run without an end: running now, or its controller died."""
        ...

    def is_running(self, rollout_id: str) -> bool:
        """Whether a live process holds the rollout's run lock."""
        ...

    def timeline(self, rollout_id: str, host: str) -> list[TimelineRow]: ...

    # snapshots, changes, rollbacks
    def snapshot(self, rollout_id: str, host: str) -> str | None: ...

    def snapshots(self, rollout_id: str) -> dict[str, str]: ...

    def snapshot_taken_at(self, rollout_id: str, host: str) -> float | None: ...

    def snapshot_hosts(self, rollout_id: str) -> set[str]: ...

    def applied(self, rollout_id: str, host: str) -> str | None: ...

    def applied_all(self, rollout_id: str) -> dict[str, str]: ...

    def unrestored(self, rollout_id: str) -> list[str]:
        """Hosts raorch may have written to in this rollout that no rollback restored."""
        ...

    def rolled_back(self, rollout_id: str) -> set[str]:
        """Hosts whose last rollback in this rollout restored them."""
        ...

    def rollback_outcomes(self, rollout_id: str) -> dict[str, Outcome]: ...

    def rollback_details(self, rollout_id: str, hosts: Iterable[str]) -> dict[str, list[str]]: ...

    def rollbacks(self, rollout_id: str) -> list[RollbackRow]:
        """Each host's last rollback, in the order they were restored."""
        ...

    # platforms and verify
    def platforms(self, rollout_id: str) -> dict[str, PlatformRow]: ...

    def verifications(self, rollout_id: str) -> list[VerifyRow]: ...


class JournalWriter(Protocol):
    """The write side: the engine's records. Each call is one transaction, durable when it
    returns (a killed process loses nothing it was told)."""

    def record(self, event: Event) -> None:
        """The engine's subscriber: make an event durable."""
        ...

    def open_rollout(
        self,
        campaign: str,
        inventory: str,
        playbook: str,
        waves: tuple[str, ...],
        playbook_sha: str = "",
        content: Content | None = None,
    ) -> RolloutRow:
        """The open rollout of this campaign, or a new one (whose revision 1 is ``content``)."""
        ...

    def add_revision(
        self, rollout_id: str, content: Content, waves: tuple[str, ...], note: str
    ) -> int: ...

    def save_targets(self, rollout_id: str, targets: dict[str, str]) -> None: ...

    def mark_forced(self, rollout_id: str, wave: str) -> None: ...

    def reset_hosts(self, rollout_id: str, hosts: list[str]) -> None: ...

    def save_snapshot(
        self, rollout_id: str, host: str, data: str, revision: int | None = None
    ) -> None:
        """Commit a host's snapshot before its first write; the first one taken wins."""
        ...

    def save_applied(self, rollout_id: str, host: str, data: str) -> None: ...

    def save_platform(
        self, rollout_id: str, host: str, caption: str, os_version: str, profile: str
    ) -> None: ...

    def record_verify(self, rollout_id: str, rows: Iterable[VerifyRow]) -> None: ...

    def close_rollout(self, rollout_id: str) -> None: ...

    def mark_interrupted(self, rollout_id: str, at: float) -> None:
        """The runs without an end of a rollout whose controller died end ``at``."""
        ...

    def lock(self, rollout_id: str) -> AbstractContextManager[None]:
        """Held while a command runs the rollout: a second one is refused (``RefusedError``).
        Released when its holder dies, whatever the way."""
        ...


class JournalStore(JournalReader, JournalWriter, Protocol):
    """Both sides: what the engine and the commands that run it hold."""

    def close_interrupted(self, now: float) -> list[str]:
        """Record as interrupted every run without an end whose controller is gone (no
        process holds its lock): a rollout killed with SIGKILL would otherwise read as running
        for ever (``raorch status`` and ``--watch``). Returns the rollouts closed so."""
        closed = [r for r in self.unfinished_runs() if not self.is_running(r)]
        for rollout_id in closed:
            self.mark_interrupted(rollout_id, now)
        return closed
