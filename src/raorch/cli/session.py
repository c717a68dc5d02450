"""What `raorch rollout` and `raorch rollback` share at the terminal: the subscribers (journal,
JSON log, live view), Ctrl-C handling, and the abort path.

Ctrl-C: the first press stops starting hosts and lets the ones in flight finish (the wave is
recorded ``canceled``); the second aborts at once with exit code 130: the journal already holds
every finished host and every snapshot, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rich.console import Console

from raorch.cli.dashboard import live_output
from raorch.cli.view import RolloutView
from raorch.engine.log import RolloutLog, log_path
from raorch.engine.runner import Stop
from raorch.engine.store import JournalStore
from raorch.models.errors import ExitCode
from raorch.models.events import Event, Subscriber
from raorch.models.inventory import Target

T = TypeVar("T")


def insecure_warnings(targets: list[Target]) -> list[str]:
    """Basic over plain HTTP and unvalidated HTTPS only with `insecure: true`: warn every run."""
    insecure = [t.name for t in targets if t.connection.insecure]
    if not insecure:
        return []
    sample = ", ".join(insecure[:5]) + (" ..." if len(insecure) > 5 else "")
    return [
        f"warning: {len(insecure)} host(s) use an insecure connection (insecure: true): {sample}."
        " Credentials or traffic may be exposed; use https with certificate validation."
    ]


def warn(lines: list[str]) -> None:
    err = Console(stderr=True)
    for line in lines:
        err.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)


class Terminal:
    """Runs one engine coroutine with the journal, the JSON log and the live view subscribed."""

    def __init__(
        self,
        journal: JournalStore,
        rollout_id: str,
        stop: Stop,
        console: Console,
        *,
        dashboard: bool,
        as_json: bool,
    ) -> None:
        self.journal = journal
        self.stop = stop
        self.console = console
        self.dashboard = dashboard
        self.as_json = as_json
        self.log = RolloutLog(log_path(rollout_id))  # $RAORCH_HOME, wherever the journal is
        self.view = RolloutView.from_journal(journal, rollout_id)

    def run(self, engine: Callable[[list[Subscriber]], Awaitable[T]]) -> T:
        err = Console(stderr=True)

        def journal_sub(event: Event) -> None:
            self.journal.record(event)

        def log_sub(event: Event) -> None:
            self.log(event)

        async def main() -> T:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            # With --json, stdout carries only the JSON document: host lines go to stderr.
            lines = Console(stderr=True) if self.as_json else self.console

            def on_sigint() -> None:
                if self.stop.requested and task is not None:
                    task.cancel()  # second press: abort
                    return
                self.stop.press()
                # Through the console that owns the live view: it prints the notice above the
                # view and redraws the view below it. Written past it (another console), the
                # notice moved the cursor a line down, and the view's next redraw, counting
                # lines up from there, left the old "running" header above the final view.
                lines.print(
                    "stopping: no new host starts; hosts in flight finish. Ctrl-C again to abort.",
                    style="yellow",
                    markup=False,
                    highlight=False,
                )

            loop.add_signal_handler(signal.SIGINT, on_sigint)
            try:
                with live_output(lines, self.view, self.dashboard) as view_sub:
                    return await engine([journal_sub, log_sub, view_sub])
            finally:
                loop.remove_signal_handler(signal.SIGINT)

        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            err.print(f"aborted; the journal keeps every finished host: {self.journal.location}")
            self.log.close()
            self.journal.close()
            sys.stdout.flush()
            # Worker threads may be blocked in pypsrp I/O; do not wait for them on abort.
            os._exit(int(ExitCode.INTERRUPTED))
        finally:
            self.log.close()

    def print_where(self) -> None:
        self.console.print(f"journal: {self.journal.location}", highlight=False, soft_wrap=True)
        self.console.print(f"log:     {self.log.path}", highlight=False, soft_wrap=True)
