"""`raorch rollout`: run one wave of the rollout described by an inventory and a playbook."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Iterable
from pathlib import Path

import click
from rich.console import Console

from raorch.cli import options
from raorch.cli.credentials import resolver
from raorch.cli.dashboard import should_use_dashboard
from raorch.cli.plain import print_summary
from raorch.cli.session import Terminal, insecure_warnings, warn
from raorch.engine.journal import Journal
from raorch.engine.rollback import RollbackResult
from raorch.engine.rollout import Rollout, RunOptions, WaveResult
from raorch.engine.work import rollback_work, rollout_work
from raorch.models.errors import ExitCode, InputError, Location, Problem
from raorch.models.events import Subscriber
from raorch.models.inventory import ResolvedInventory, WaveSpec
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.outcomes import Outcome, WaveState


def wave_spec(inventory: ResolvedInventory, wave: str) -> WaveSpec:
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
    return spec


def passwords_for(inventory: ResolvedInventory, hosts: Iterable[str]) -> dict[str, str]:
    """Resolved before any host is touched, once per account (``prompt`` asks once)."""
    secrets = resolver()
    return {h: secrets.password(inventory.targets[h].credentials) for h in hosts}


def exit_code_for(result: WaveResult) -> ExitCode:
    if result.state is WaveState.CANCELED:
        return ExitCode.INTERRUPTED
    if result.state is WaveState.HALTED:
        return ExitCode.GATE_FAILED
    if result.counts.get(Outcome.FAILED):
        return ExitCode.HOSTS_FAILED
    return ExitCode.OK


def rollback_line(result: RollbackResult) -> str:
    counts = ", ".join(f"{n} {o.value}" for o, n in sorted(result.counts.items())) or "nothing"
    return f"gate failed; on_gate_failure: rollback restored the wave's hosts: {counts}"


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
            "rollback": None
            if result.rollback is None
            else {
                "counts": {o.value: n for o, n in sorted(result.rollback.counts.items())},
                "conflict_hosts": list(result.rollback.conflict_hosts),
                "failed_hosts": list(result.rollback.failed_hosts),
            },
            "journal": str(journal.path),
            "log": str(log),
            "exit_code": int(exit_code_for(result)),
        },
        indent=2,
    )


def run_rollout(
    inventory_path: str | Path,
    playbook_opt: str | Path | None,
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
    playbook = load_playbook(playbook_path)
    spec = wave_spec(inventory, wave)
    passwords = passwords_for(inventory, spec.hosts)
    warn(insecure_warnings([inventory.targets[h] for h in spec.hosts]))

    journal = Journal.open_default()
    rollout = Rollout(
        journal, inventory, playbook_path, rollout_work(playbook, inventory.domains, passwords)
    )
    terminal = Terminal(
        journal, rollout.id, rollout.stop, console, dashboard=dashboard, as_json=as_json
    )

    def engine(subscribers: list[Subscriber]) -> Awaitable[WaveResult]:
        return rollout.run_wave(
            RunOptions(
                wave=wave,
                limit=limit,
                force=force,
                concurrency=concurrency,
                deadline=deadline,
                subscribers=subscribers,
                # on_gate_failure: rollback undoes the halted wave's changes in the same run.
                rollback_work=rollback_work(playbook, inventory.domains, passwords, force=False),
            )
        )

    result = terminal.run(engine)
    if as_json:
        click.echo(summary_json(result, journal, terminal.log.path))
    else:
        print_summary(console, terminal.view)
        if result.rollback is not None:
            console.print(rollback_line(result.rollback), highlight=False, soft_wrap=True)
        terminal.print_where()
    journal.close()
    return exit_code_for(result)


@click.command("rollout")
@options.inventory
@options.playbook
@click.option("--wave", required=True, help="The wave to run (waves run in inventory order).")
@click.option(
    "--limit",
    default=None,
    help="Only hosts matching these patterns (comma-separated fnmatch, case-insensitive), "
    "or @failed to retry the wave's failed hosts.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Run this wave although an earlier wave has not held its gate (recorded).",
)
@options.concurrency
@options.deadline
@options.no_dashboard
@options.as_json
def rollout(
    inventory_path: str | Path,
    playbook_opt: str | Path | None,
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
