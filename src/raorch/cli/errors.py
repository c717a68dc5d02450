"""The one place where raorch's errors become terminal output and exit codes.

Bad input must never show a traceback: a ``RaorchError`` prints as ``error: ...`` lines on
stderr and exits with its ``exit_code``; Ctrl-C exits 130 (ExitCode.INTERRUPTED). Every
command gets this twice over: the ``main`` group is a ``RaorchGroup`` (so a subcommand that
forgets the decorator is still covered), and ``handle_errors`` can wrap any callback (for
commands run on their own, e.g. in tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from raorch.models.errors import ExitCode, InputError, RaorchError

P = ParamSpec("P")
R = TypeVar("R")


def print_error(err: RaorchError) -> None:
    """``error: <file:line:col: path: message (hint)>``, one line per problem, on stderr."""
    if isinstance(err, InputError) and err.problems:
        for problem in err.problems:
            click.echo(f"error: {problem}", err=True)
    else:
        click.echo(f"error: {err}", err=True)


def _exit_for(exc: BaseException) -> click.exceptions.Exit:
    if isinstance(exc, RaorchError):
        print_error(exc)
        return click.exceptions.Exit(int(exc.exit_code))
    click.echo("interrupted", err=True)
    return click.exceptions.Exit(int(ExitCode.INTERRUPTED))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a click callback: RaorchError -> message + its exit code; Ctrl-C -> 130."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (RaorchError, KeyboardInterrupt) as exc:
            raise _exit_for(exc) from None

    return wrapper


class RaorchGroup(click.Group):
    """A click group whose subcommands all report errors through ``handle_errors``' rules.

    Click itself would turn Ctrl-C into "Aborted!" and exit 1; catching it here, before click
    does, keeps the documented 130.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RaorchError, KeyboardInterrupt) as exc:
            raise _exit_for(exc) from None
