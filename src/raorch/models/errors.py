"""Errors a user can act on, and the exit codes of every command (docs/exit-codes.md).

Every user-facing error says what is wrong, where (file:line:column and field path, or host and
step) and what to do. The CLI prints them; nothing below it prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Stable exit codes; documented in docs/exit-codes.md. Never renumber."""

    OK = 0
    HOSTS_FAILED = 1  # some hosts failed but every gate held
    INVALID_INPUT = 2  # inventory, playbook or command line is wrong
    GATE_FAILED = 3  # a wave halted because its gate failed
    CHANGES_PENDING = 4  # plan: some hosts would change
    NOT_COMPLIANT = 5  # verify: a reachable, eligible host is not compliant
    REFUSED = 6  # the command was refused (wave out of order, nothing to roll back, ...)
    UNREACHABLE = 7  # verify: a host could not be reached or refused the credentials
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a user's file a problem is. Line and column are 1-based."""

    file: str
    line: int | None = None
    column: int | None = None
    path: str = ""  # field path, e.g. "waves[1].max_fail_percentage"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}" if self.path else where


@dataclass(frozen=True, slots=True)
class Problem:
    location: Location
    message: str  # what is wrong
    hint: str = ""  # what to do / what is allowed

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class RaorchError(Exception):
    """Root of raorch's own errors. ``str()`` is a complete sentence for the user."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else self.message


class InputError(RaorchError):
    """One or more problems in an inventory, playbook or accounts file."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def __str__(self) -> str:
        return self.message


class RefusedError(RaorchError):
    """The command cannot run as asked (a wave out of order, no rollout to roll back...)."""

    exit_code = ExitCode.REFUSED
