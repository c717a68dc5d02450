"""`raorch rollout`: run one wave of the rollout described by an inventory and a playbook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console

from raorch.cli.dashboard import live_output, should_use_dashboard
from raorch.cli.plain import print_summary
from raorch.cli.view import RolloutView
from raorch.engine.journal import Journal
from raorch.engine.log import RolloutLog, log_path
from raorch.engine.rollout import DEFAULT_CONCURRENCY, Rollout, RunOptions, WaveResult
from raorch.engine.work import rollout_work
from raorch.models.errors import ExitCode, InputError, Location, Problem
from raorch.models.events import Event
from raorch.models.inventory import ResolvedInventory, Target
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.outcomes import Outcome, WaveState
from raorch.models.secrets import SecretResolver


@dataclass(frozen=True, slots=True)
class Prepared:
    inventory: ResolvedInventory
    playbook_path: Path
    passwords: dict[str, str]  # by host name; never printed


def prompt_password(username: str) -> str:
    return str(click.prompt(f"Password for {username}", hide_input=True, err=True))


def prepare(inventory_path: str, playbook_opt: str | None, hosts: list[str] | None) -> Prepared:
    """Load and check everything before any host is touched; passwords resolved once per
    account (``prompt`` asks once, not once per host)."""
    inventory = load_inventory(inventory_path)
    playbook_path = resolve_playbook_path(inventory, playbook_opt)
    resolver = SecretResolver(prompt=prompt_password if sys.stdin.isatty() else None)
    names = hosts if hosts is not None else list(inventory.targets)
    passwords = {h: resolver.password(inventory.targets[h].credentials) for h in names}
    return Prepared(inventory, playbook_path, passwords)


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


def exit_code_for(result: WaveResult) -> ExitCode:
    if result.state is WaveState.CANCELED:
        return ExitCode.INTERRUPTED
    if result.state is WaveState.HALTED:
        return ExitCode.GATE_FAILED
    if result.counts.get(Outcome.FAILED):
        return ExitCode.HOSTS_FAILED
    return ExitCode.OK


def summary_json(result: WaveResult, journal: Journal, log: Path) -> str:
    gate = result.gate
    return json.dumps(
        {
            "rollout": result.rollout_id,
            "wave": result.wave,
            "state": result.state.value,
            "counts": {o.value: n for o, n in sorted(result.counts.items())},
            "gate": None
            if gate is None
            else {
                "finished": gate.finished,
                "failed": gate.failed,
                "failure_percentage": round(gate.failure_percentage, 2),
                "max_fail_percentage": gate.max_fail_percentage,
                "held": gate.held,
            },
            "ran": result.ran,
            "failed_hosts": list(result.failed_hosts),
            "journal": str(journal.path),
            "log": str(log),
            "exit_code": int(exit_code_for(result)),
        },
        indent=2,
    )


def run_rollout(
    inventory_path: str,
    playbook_opt: str | None,
    wave: str,
    *,
    limit: str | None,
    force: bool,
    concurrency: int,
    deadline: float | None,
    dashboard: bool,
    as_json: bool,
    console: Console,
) -> ExitCode:
    inventory = load_inventory(inventory_path)
    playbook_path = resolve_playbook_path(inventory, playbook_opt)
    spec = inventory.wave(wave)
    if spec is None:
        raise InputError(
            [
                Problem(
                    Location(inventory.path, path="waves"),
                    f"there is no wave named {wave!r}",
                    "the inventory's waves are: " + ", ".join(w.name for w in inventory.waves),
                )
            ]
        )
    prepared = prepare(inventory_path, playbook_opt, list(spec.hosts))
    playbook = load_playbook(playbook_path)
    err = Console(stderr=True)
    for line in insecure_warnings([inventory.targets[h] for h in spec.hosts]):
        err.print(line, style="yellow", markup=False, highlight=False)

    journal = Journal.open_default()
    work = rollout_work(playbook, inventory.domains, prepared.passwords)
    rollout = Rollout(journal, inventory, playbook_path, work)
    log = RolloutLog(log_path(rollout.id, journal.path.parent))
    options = RunOptions(
        wave=wave, limit=limit, force=force, concurrency=concurrency, deadline=deadline
    )

    view = RolloutView.from_journal(journal, rollout.id)

    def journal_sub(event: Event) -> None:
        journal.record(event)

    def log_sub(event: Event) -> None:
        log(event)

    async def main() -> WaveResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_sigint() -> None:
            if rollout.stop.requested and task is not None:
                task.cancel()  # second press: abort
                return
            rollout.stop.press()
            err.print(
                "stopping: no new host starts; hosts in flight finish. Ctrl-C again to abort.",
                style="yellow",
            )

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            # With --json, stdout carries only the JSON summary: host lines go to stderr.
            lines = Console(stderr=True) if as_json else console
            with live_output(lines, view, dashboard) as view_sub:
                options.subscribers = [journal_sub, log_sub, view_sub]
                return await rollout.run_wave(options)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        err.print(f"aborted; the journal keeps every finished host: {journal.path}")
        log.close()
        journal.close()
        sys.stdout.flush()
        # Worker threads may be blocked in pypsrp I/O; do not wait for them on abort.
        os._exit(int(ExitCode.INTERRUPTED))
    log.close()
    if as_json:
        click.echo(summary_json(result, journal, log.path))
    else:
        print_summary(console, view)
        console.print(f"journal: {journal.path}", highlight=False, soft_wrap=True)
        console.print(f"log:     {log.path}", highlight=False, soft_wrap=True)
    journal.close()
    return exit_code_for(result)


@click.command("rollout")
@click.option(
    "--inventory",
    "inventory_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The inventory YAML file.",
)
@click.option(
    "--playbook",
    "playbook_opt",
    type=click.Path(dir_okay=False),
    help="The playbook YAML file (default: the inventory's `playbook:`).",
)
@click.option("--wave", required=True, help="The wave to run (waves run in inventory order).")
@click.option(
    "--limit",
    default=None,
    help="Only hosts matching these patterns (comma-separated, fnmatch), "
    "or @failed to retry the wave's failed hosts.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Run this wave although an earlier wave has not held its gate (recorded).",
)
@click.option(
    "--concurrency",
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Hosts in flight at once.",
)
@click.option(
    "--deadline",
    default=None,
    type=click.FloatRange(min=1),
    help="Seconds a host may take before it is failed (default 300).",
)
@click.option("--no-dashboard", is_flag=True, help="Plain lines instead of the live view.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def rollout(
    inventory_path: str,
    playbook_opt: str | None,
    wave: str,
    limit: str | None,
    force: bool,
    concurrency: int,
    deadline: float | None,
    no_dashboard: bool,
    as_json: bool,
) -> None:
    """Roll the playbook out to one wave of the inventory.

    Waves form one rollout per inventory and playbook content: a later wave is refused until
    every earlier wave finished with its gate held. Killed? Run the same command again: it
    resumes the wave.
    """

    console = Console()
    code = run_rollout(
        inventory_path,
        playbook_opt,
        wave,
        limit=limit,
        force=force,
        concurrency=concurrency,
        deadline=deadline,
        dashboard=not as_json and should_use_dashboard(no_dashboard, sys.stdout),
        as_json=as_json,
        console=console,
    )
    raise click.exceptions.Exit(int(code))
