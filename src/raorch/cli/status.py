"""``raorch status``: the dashboard's view of a rollout, read from the journal.

It works from another terminal while a rollout runs (the journal is SQLite in WAL mode: this
reader never blocks the writer) and after it ended. ``--watch`` rereads the journal once a
second until the rollout ends: no wave running and the last run finished. ``--json`` prints the
same figures as ``RolloutView.to_json`` (one compact object per line with ``--watch``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click
from rich.console import Console

from raorch.cli import options
from raorch.cli.dashboard import Dashboard, DashboardFrame, should_use_dashboard
from raorch.cli.errors import handle_errors
from raorch.cli.journal import find_rollout, open_journal
from raorch.cli.plain import print_summary
from raorch.cli.view import RolloutView

WATCH_INTERVAL = 1.0  # seconds between reads of the journal: a 10,000-host read takes ~50 ms


def watch(
    read: Callable[[], RolloutView],
    show: Callable[[RolloutView], None],
    interval: float = WATCH_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutView:
    """Read and show until the rollout is no longer running; returns the last view read."""
    while True:
        view = read()
        show(view)
        if not view.running:
            return view
        sleep(interval)


@click.command("status")
@click.option("--rollout", "rollout_id", default=None, help="The rollout id (see the journal).")
@click.option("--last", is_flag=True, help="The most recent rollout (the default).")
@click.option("--watch", "watching", is_flag=True, help="Refresh until the rollout ends.")
@click.option("--json", "as_json", is_flag=True, help="The figures as JSON, for scripts.")
@click.option("--no-dashboard", is_flag=True, help="Plain lines even on a terminal.")
@options.journal
@handle_errors
def status(
    rollout_id: str | None,
    last: bool,
    watching: bool,
    as_json: bool,
    no_dashboard: bool,
    journal_url: str | None,
) -> None:
    """Show where a rollout stands: its waves, gates, rates, last failures and refusals.

    Reads the journal ($RAORCH_HOME, default ./.raorch); safe to run while a rollout runs.
    """
    if last and rollout_id is not None:
        raise click.UsageError("--rollout and --last name the rollout twice; give one of them")
    journal = open_journal(journal_url)
    try:
        chosen = find_rollout(journal, rollout_id).id

        def read() -> RolloutView:
            # While watching: the controller may die between two reads.
            journal.close_interrupted(time.time())
            return RolloutView.from_journal(journal, chosen)

        console = Console()
        if as_json:
            if watching:
                watch(read, lambda v: click.echo(v.figures(time.time()).to_json(indent=None)))
            else:
                click.echo(read().to_json(time.time()))
        elif should_use_dashboard(no_dashboard, sys.stdout):
            if watching:
                with Dashboard(console, read()) as dashboard:

                    def show(view: RolloutView) -> None:
                        dashboard.view = view
                        dashboard.refresh()

                    watch(read, show)
            else:
                console.print(DashboardFrame(read().figures(time.time())))
        else:
            # Plain: the summary once, at the end when watching (a pipe cannot be redrawn).
            view = watch(read, lambda v: None) if watching else read()
            print_summary(console, view)
    finally:
        journal.close()
