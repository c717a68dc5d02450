"""`raorch rollback`: restore exactly what was there before raorch changed it.

For every host that raorch changed in the rollout (or one wave of it), the snapshot the
journal kept is restored: values that were absent are deleted again, types and data as they
were, helpers removed from Administrators only if raorch added them, each firewall rule's
Enabled as it was. A setting someone else changed since raorch set it is a ``conflict``: it is
reported and left alone unless ``--force``. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable
from pathlib import Path

import click
from rich.console import Console

from raorch.cli import options
from raorch.cli.dashboard import should_use_dashboard
from raorch.cli.errors import handle_errors
from raorch.cli.plain import print_summary
from raorch.cli.rollout import passwords_for
from raorch.cli.session import Terminal, insecure_warnings, warn
from raorch.engine.journal import Journal, RolloutRow, state_home
from raorch.engine.rollback import Rollback, RollbackOptions, RollbackResult
from raorch.engine.rollout import content_sha
from raorch.engine.work import rollback_work
from raorch.models.errors import ExitCode, RefusedError
from raorch.models.events import Subscriber
from raorch.models.load import load_inventory, load_playbook


def open_journal() -> Journal:
    """The existing journal; a missing one is a refusal, never silently created."""
    path = state_home() / "state.db"
    if not path.exists():
        raise RefusedError(
            f"there is no raorch journal at {path}",
            "run raorch from the directory where the rollout ran, or set RAORCH_HOME",
        )
    return Journal(path)


def choose_rollout(journal: Journal, rollout_id: str | None, last: bool) -> RolloutRow:
    if rollout_id is None and not last:
        raise RefusedError(
            "say which rollout: --rollout ID or --last", "list them with `raorch history`"
        )
    row = journal.last_rollout() if rollout_id is None else journal.rollout(rollout_id)
    if row is None:
        raise RefusedError(
            f"no rollout {rollout_id!r} in {journal.path}"
            if rollout_id
            else f"no rollout in {journal.path}",
            "list them with `raorch history`",
        )
    return row


def exit_code_for(result: RollbackResult, canceled: bool) -> ExitCode:
    if canceled:
        return ExitCode.INTERRUPTED
    if result.conflict_hosts or result.failed_hosts:
        return ExitCode.HOSTS_FAILED
    return ExitCode.OK


@click.command("rollback")
@click.option("--rollout", "rollout_id", default=None, help="The rollout to undo (see history).")
@click.option("--last", is_flag=True, help="Undo the most recent rollout.")
@click.option("--wave", default=None, help="Only this wave's hosts.")
@options.limit
@click.option("--force", is_flag=True, help="Restore over settings someone else changed since.")
@click.option(
    "--inventory",
    "inventory_opt",
    default=None,
    type=click.Path(dir_okay=False),
    help="Reach the hosts through this inventory (default: the one the rollout used).",
)
@options.concurrency
@options.deadline
@options.no_dashboard
@options.as_json
@handle_errors
def rollback(
    rollout_id: str | None,
    last: bool,
    wave: str | None,
    limit: str | None,
    force: bool,
    inventory_opt: str | None,
    concurrency: int,
    deadline: float | None,
    no_dashboard: bool,
    as_json: bool,
) -> None:
    """Restore every host raorch changed in a rollout (or wave) from its snapshot."""
    console = Console()
    journal = open_journal()
    row = choose_rollout(journal, rollout_id, last)
    playbook_path = Path(row.playbook)
    if not playbook_path.exists() or (
        row.playbook_sha and content_sha(playbook_path) != row.playbook_sha
    ):
        raise RefusedError(
            f"the playbook rollout {row.id} used ({row.playbook}) is missing or has changed "
            "since; rollback works out what raorch wrote from it",
            "put the playbook back as it was for that rollout",
        )
    inventory = load_inventory(inventory_opt or row.inventory)
    playbook = load_playbook(playbook_path)
    engine_ = Rollback(journal, row, inventory)
    todo = engine_.candidates(wave, limit)
    if not todo:
        message = f"nothing to roll back in rollout {row.id}: every host raorch changed"
        message += " is rolled back already" if journal.rolled_back(row.id) else " - none"
        # Earlier runs narrowed to waves or hosts may have restored the last of them.
        closed = engine_.close_if_done()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "rollout": row.id,
                        "ran": 0,
                        "counts": {},
                        "conflicts": {},
                        "failed_hosts": [],
                        "closed": closed,
                        "exit_code": 0,
                    },
                    indent=2,
                )
            )
        else:
            if closed:
                message += "; the rollout is closed (a new rollout starts afresh)"
            console.print(message, highlight=False, soft_wrap=True)
        journal.close()
        raise click.exceptions.Exit(int(ExitCode.OK))
    hosts = [h for h, _ in todo if h in inventory.targets]
    passwords = passwords_for(inventory, hosts)
    warn(insecure_warnings([inventory.targets[h] for h in hosts]))
    terminal = Terminal(
        journal,
        row.id,
        engine_.stop,
        console,
        dashboard=not as_json and should_use_dashboard(no_dashboard, sys.stdout),
        as_json=as_json,
    )
    work = rollback_work(playbook, inventory.domains, passwords, force=force)

    def engine(subscribers: list[Subscriber]) -> Awaitable[RollbackResult]:
        return engine_.run(
            RollbackOptions(
                work=work,
                wave=wave,
                limit=limit,
                concurrency=concurrency,
                deadline=deadline,
                subscribers=subscribers,
            )
        )

    result = terminal.run(engine)
    code = exit_code_for(result, engine_.stop.requested)
    conflicts = journal.rollback_details(row.id, result.conflict_hosts)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "rollout": row.id,
                    "ran": result.ran,
                    "counts": {o.value: n for o, n in sorted(result.counts.items())},
                    "conflicts": conflicts,
                    "failed_hosts": list(result.failed_hosts),
                    "closed": result.closed,
                    "exit_code": int(code),
                },
                indent=2,
            )
        )
    else:
        print_summary(console, terminal.view)
        counts = ", ".join(f"{n} {o.value}" for o, n in sorted(result.counts.items()))
        console.print(f"rollback of {row.id}: {counts}", highlight=False, soft_wrap=True)
        for host, details in conflicts.items():
            console.print(f"conflict on {host}:", highlight=False, soft_wrap=True)
            for line in details:
                console.print(f"    {line}", highlight=False, soft_wrap=True)
        if conflicts:
            console.print("left alone; run again with --force to restore them anyway")
        if result.closed:
            console.print(
                "every host is restored; the rollout is closed (a new rollout starts afresh)"
            )
        terminal.print_where()
    journal.close()
    raise click.exceptions.Exit(int(code))
