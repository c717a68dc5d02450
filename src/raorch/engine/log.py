"""The rollout log: one JSON object per line through structlog, fit for a SIEM.

A subscriber of the engine's events. Each line carries ``event`` (the event's kind), the
rollout id, a UTC ISO timestamp and the event's own fields; enums are written by value. The
file is created 0600 next to the journal: ``$RAORCH_HOME/rollouts/<id>/log.jsonl``. Passwords
never reach it: events carry no credentials.
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from pathlib import Path
from typing import IO, Any

import structlog

from raorch.engine.paths import private_dir, private_file, state_home
from raorch.models.events import Event
from raorch.models.outcomes import Reason


def log_path(rollout_id: str, home: Path | None = None) -> Path:
    return (home or state_home()) / "rollouts" / rollout_id / "log.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Reason):
        return {"stage": value.stage.value, "message": value.message}
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_KINDS: dict[type, tuple[str, tuple[str, ...]]] = {}


def _kind(event_type: type) -> tuple[str, tuple[str, ...]]:
    """``HostFinished`` -> (``host_finished``, its field names): worked out once per event
    type, not for every line."""
    known = _KINDS.get(event_type)
    if known is None:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", event_type.__name__).lower()
        known = _KINDS[event_type] = (name, tuple(f.name for f in dataclasses.fields(event_type)))
    return known


class RolloutLog:
    """Appends events as JSON lines; flushed after each line so a kill loses nothing."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        private_file(path)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def __call__(self, event: Event, kind: str = "rollout") -> None:
        name, names = _kind(type(event))
        fields = {n: _plain(getattr(event, n)) for n in names}
        fields["run"] = kind
        self._logger.info(name, **fields)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
