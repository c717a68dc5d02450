"""Outcomes of a host, a wave and a rollout: Enums plus reasons, never bare strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """Final outcome of one host in one run (rollout, rollback or verify)."""

    # rollout
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # refused by pre-flight, nothing written
    FAILED = "failed"
    # rollback
    ROLLED_BACK = "rolled_back"
    CONFLICT = "conflict"
    # verify
    COMPLIANT = "compliant"
    DRIFTED = "drifted"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


class Stage(StrEnum):
    """Where in a host session something happened."""

    CONNECT = "connect"
    AUTH = "auth"
    PREFLIGHT = "preflight"
    SNAPSHOT = "snapshot"
    APPLY = "apply"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    DEADLINE = "deadline"


class WaveState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    HALTED = "halted"  # its gate failed
    CANCELED = "canceled"  # Ctrl-C
    PARTIAL = "partial"  # a --limit run finished; other hosts of the wave have not run yet
    ROLLED_BACK = "rolled_back"  # a rollback restored hosts of it; run the wave again to re-apply


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a host ended as it did: the stage and a sentence a Windows administrator understands."""

    stage: Stage
    message: str

    def __str__(self) -> str:
        return f"{self.stage.value}: {self.message}"
