"""The error a host session raises when the session itself fails (not one operation)."""

from __future__ import annotations

from raorch.models.errors import ExitCode, RaorchError
from raorch.models.outcomes import Stage


class TransportError(RaorchError):
    """Reaching a host, logging on to it, or running a pipeline on it failed.

    ``stage`` is ``Stage.CONNECT`` (refused, reset, timeout, TLS, HTTP 5xx), ``Stage.AUTH``
    (credentials refused) or the stage the caller ran the pipeline for. ``transient`` says
    whether trying again later may succeed. The message names the host and the step; the hint
    says what to do. Neither ever contains a password.
    """

    exit_code = ExitCode.HOSTS_FAILED

    def __init__(
        self, host: str, stage: Stage, message: str, *, transient: bool, hint: str = ""
    ) -> None:
        super().__init__(f"host {host}: {stage.value}: {message}", hint)
        self.host = host
        self.stage = stage
        self.transient = transient
        self.detail = message

    def __repr__(self) -> str:
        return (
            f"TransportError(host={self.host!r}, stage={self.stage.value!r}, "
            f"message={self.detail!r}, transient={self.transient!r}, hint={self.hint!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle through their args by default, which do not match __init__ here;
        # keep them picklable for process pools.
        return (_rebuild, (self.host, self.stage, self.detail, self.transient, self.hint))


def _rebuild(host: str, stage: Stage, message: str, transient: bool, hint: str) -> TransportError:
    return TransportError(host, stage, message, transient=transient, hint=hint)
