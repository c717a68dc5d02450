"""The typed events the engine emits. The journal, the JSON log and the dashboard subscribe.

Events are immutable values carrying everything a subscriber needs; no subscriber reaches back
into the engine. Every event has a ``kind``: the run it belongs to (a rollout's, a rollback's...),
which decides what the journal does with it. Times are ``time.time()`` seconds (wall clock,
for the log) and durations are measured with a monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from raorch.models.outcomes import Outcome, Reason, WaveState


class RunKind(StrEnum):
    ROLLOUT = "rollout"
    ROLLBACK = "rollback"
    VERIFY = "verify"
    PLAN = "plan"


@dataclass(frozen=True, slots=True)
class RolloutStarted:
    rollout_id: str
    kind: RunKind
    inventory: str
    playbook: str
    waves: tuple[str, ...]
    at: float
    forced: bool = False


@dataclass(frozen=True, slots=True)
class WaveStarted:
    rollout_id: str
    wave: str
    total_hosts: int  # hosts this run will take on (after --limit and resume)
    max_fail_percentage: float
    at: float
    kind: RunKind = RunKind.ROLLOUT
    # The wave's own figures (None from a rollback): all its hosts, and the outcomes of those
    # that finished in earlier runs and are not taken on again, so that a wave's counts are
    # always of the wave's hosts, whichever run they finished in.
    wave_hosts: int | None = None
    earlier: dict[Outcome, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostStarted:
    rollout_id: str
    wave: str
    host: str
    at: float
    kind: RunKind = RunKind.ROLLOUT


@dataclass(frozen=True, slots=True)
class HostFinished:
    rollout_id: str
    wave: str
    host: str
    outcome: Outcome
    reason: Reason | None
    duration: float  # seconds, monotonic
    at: float
    changes: int = 0  # writes made (rollout) or restored (rollback)
    details: tuple[str, ...] = ()  # e.g. a rollback conflict's differences
    kind: RunKind = RunKind.ROLLOUT


@dataclass(frozen=True, slots=True)
class GateEvaluated:
    rollout_id: str
    wave: str
    finished: int
    failed: int  # including skipped hosts when the wave says skipped_counts_as_failed
    failure_percentage: float
    max_fail_percentage: float
    held: bool
    at: float
    kind: RunKind = RunKind.ROLLOUT


@dataclass(frozen=True, slots=True)
class WaveFinished:
    rollout_id: str
    wave: str
    state: WaveState
    counts: dict[Outcome, int] = field(default_factory=dict)
    at: float = 0.0
    kind: RunKind = RunKind.ROLLOUT


@dataclass(frozen=True, slots=True)
class RolloutFinished:
    rollout_id: str
    at: float
    interrupted: bool = False
    kind: RunKind = RunKind.ROLLOUT


Event = (
    RolloutStarted
    | WaveStarted
    | HostStarted
    | HostFinished
    | GateEvaluated
    | WaveFinished
    | RolloutFinished
)


class Subscriber(Protocol):
    """Receives every event, in order, on the engine's event-loop thread."""

    def __call__(self, event: Event) -> None: ...
