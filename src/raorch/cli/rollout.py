"""`raorch rollout`: run one wave of the rollout described by an inventory and a playbook."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Iterable
from pathlib import Path

import click
from rich.console import Console

from raorch.cli import options
from raorch.cli.credentials import credentials_for
from raorch.cli.dashboard import should_use_dashboard
from raorch.cli.journal import create_journal
from raorch.cli.plain import print_summary
from raorch.cli.session import Terminal, insecure_warnings, warn
from raorch.cli.workers import broker_dispatcher, refuse_prompted, report_sites, site_limits
from raorch.engine.broker import CeleryDispatcher
from raorch.engine.contents import PlaybookBook
from raorch.engine.dispatch import ControllerPasswords
from raorch.engine.rollback import RollbackResult
from raorch.engine.rollout import (
    FAILED_SELECTOR,
    ContentChangedError,
    Rollout,
    RunOptions,
    WaveResult,
)
from raorch.engine.runner import SiteLimits
from raorch.engine.store import JournalReader
from raorch.engine.work import rollback_work, rollout_work
from raorch.models.errors import ExitCode, RefusedError
from raorch.models.events import RunKind, Subscriber
from raorch.models.inventory import ResolvedInventory
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.outcomes import Outcome, WaveState
from raorch.models.playbook import Playbook

SHOWN_HOSTS = 5  # host names listed in a hint; the rest are counted

# Item 2 of issue 19: the limit of one journal per state directory, said once per journal.
SEPARATE_JOURNALS = (
    "note: this is the first rollout in the journal {path}. raorch knows only what this "
    "journal records: a host another journal (another directory, RAORCH_HOME or "
    "RAORCH_JOURNAL) changed reads here as it is now, is snapshotted so, and a rollback from "
    "here restores it to that, not to before the other journal's changes. Run every rollout of "
    "a fleet with one journal: one RAORCH_HOME, or one shared journal (--journal or "
    "RAORCH_JOURNAL) (README, 'One journal per fleet')."
)


def passwords_for(inventory: ResolvedInventory, hosts: Iterable[str]) -> ControllerPasswords:
    """Resolved before any host is touched, once per account (``prompt`` asks once), and kept
    in this process: the hosts' work gets them here, never through its context. The run's
    Kerberos logon too (``credentials_for``)."""
    return credentials_for(inventory, [inventory.targets[h] for h in hosts])


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


def _hosts_text(hosts: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(hosts[:SHOWN_HOSTS])
    return shown + (f" and {len(hosts) - SHOWN_HOSTS} more" if len(hosts) > SHOWN_HOSTS else "")


def _counts_text(counts: dict[Outcome, int]) -> str:
    return ", ".join(f"{n} {o.value}" for o, n in sorted(counts.items()) if n) or "none"


def next_steps(result: WaveResult, command: str, next_wave: str | None) -> list[str]:
    """What happened before this run (when it took on no host) and what to run next: the
    plain command, ``--limit @failed``, or the next wave. ``command``: this wave's command."""
    lines: list[str] = []
    wave = result.wave
    failed = result.failed_hosts
    if result.ran == 0:
        earlier = sum(result.earlier.values())
        if result.before is WaveState.HALTED or result.state is WaveState.HALTED:
            lines.append(
                f"no host was contacted: wave {wave} halted in an earlier run "
                f"({_counts_text(result.earlier)} of its {result.wave_hosts} hosts)"
            )
        elif result.before is WaveState.PENDING and earlier == 0:
            lines.append(f"no host was contacted: wave {wave} has no host to run")
        else:
            lines.append(
                f"nothing to run: {earlier} of wave {wave}'s {result.wave_hosts} hosts finished "
                f"in earlier runs ({_counts_text(result.earlier)}) and are not run again"
            )
    if result.state is WaveState.HALTED:
        if result.rollback is not None:
            lines.append(
                "after fixing the cause, the plain command runs the wave again in full "
                f"(its failed hosts too): {command}"
            )
            return lines
        if failed:
            lines.append(
                f"{len(failed)} failed host(s) ({_hosts_text(failed)}) count against the gate "
                "and are not retried by the plain command; after fixing the cause, retry them: "
                f"{command} --limit {FAILED_SELECTOR}"
            )
        if result.not_started:
            lines.append(
                f"{len(result.not_started)} host(s) of the wave have not run; once the gate "
                f"holds again, the plain command runs them: {command}"
            )
        return lines
    if result.state is WaveState.CANCELED:
        lines.append(f"stopped; the same command resumes the wave: {command}")
    elif result.state is WaveState.PARTIAL and result.not_started:
        lines.append(
            f"{len(result.not_started)} host(s) of wave {wave} have not run yet: {command}"
        )
    elif result.state is WaveState.DONE:
        if failed:
            lines.append(
                f"{len(failed)} host(s) failed ({_hosts_text(failed)}); after fixing the cause, "
                f"retry them: {command} --limit {FAILED_SELECTOR}"
            )
        if next_wave is not None:
            lines.append(f"next wave: {next_wave}")
    return lines


def summary_json(result: WaveResult, journal: JournalReader, log: Path) -> str:
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
            "wave_hosts": result.wave_hosts,
            "earlier": {o.value: n for o, n in sorted(result.earlier.items())},
            "not_started": len(result.not_started),
            "failed_hosts": list(result.failed_hosts),
            "rollback": None
            if result.rollback is None
            else {
                "counts": {o.value: n for o, n in sorted(result.rollback.counts.items())},
                "conflict_hosts": list(result.rollback.conflict_hosts),
                "failed_hosts": list(result.rollback.failed_hosts),
            },
            "journal": journal.location,
            "log": str(log),
            "exit_code": int(exit_code_for(result)),
        },
        indent=2,
    )


def wave_command(inventory_path: str | Path, playbook_opt: str | Path | None, wave: str) -> str:
    """The command that runs this wave again, as the operator typed its files."""
    playbook = (
        "" if playbook_opt is None or str(playbook_opt) == "" else f" --playbook {playbook_opt}"
    )
    return f"raorch rollout --inventory {inventory_path}{playbook} --wave {wave}"


def content_changed(error: ContentChangedError, command: str) -> RefusedError:
    """The refusal of a run whose inventory or playbook changed in the middle of a rollout:
    what changed, and the two choices, as commands."""
    row = error.open_row
    lines = [
        f"the inventory or playbook changed since rollout {row.id} began; nothing was done.",
        "  waves so far: " + ", ".join(error.waves),
        "  what changed:",
        *(f"    {line}" for line in error.changes),
        "  choose one:",
        f"    {command} --continue",
        f"        go on with rollout {row.id} and the changed content (recorded in the "
        "journal); hosts that finished already keep what the earlier content set",
        f"    raorch rollback --rollout {row.id}",
        "        restore every host it changed first; then the same rollout command starts a "
        "new rollout with the changed content",
    ]
    return RefusedError("\n".join(lines))


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
    go_on: bool = False,
    broker: str | None = None,
    sites: SiteLimits | None = None,
    no_worker_after: float | None = None,
    journal_url: str | None = None,
) -> ExitCode:
    inventory = load_inventory(inventory_path)
    playbook_path = resolve_playbook_path(inventory, playbook_opt)
    playbook = load_playbook(playbook_path)
    spec = inventory.require_wave(wave)
    command = wave_command(inventory_path, playbook_opt, wave)

    journal = create_journal(journal_url)
    first = not journal.rollouts()
    rollout = Rollout(
        journal,
        inventory,
        playbook_path,
        rollout_work(playbook, inventory.domains),
        playbook,
        go_on=go_on,
    )
    try:
        # Every refusal before anything is asked, contacted or recorded.
        rollout.check(wave, limit, force)
    except ContentChangedError as error:
        journal.close()
        raise content_changed(error, command) from None
    except BaseException:
        journal.close()
        raise
    targets = [inventory.targets[h] for h in spec.hosts]
    dispatcher: CeleryDispatcher | None = None
    if broker is not None:
        # Workers resolve the references where they run: nothing is asked or read here.
        refuse_prompted(targets)
        try:
            dispatcher = broker_dispatcher(broker, targets, no_worker_after)
        except BaseException:
            journal.close()
            raise
        passwords = None
    else:
        passwords = passwords_for(inventory, spec.hosts)
    notes = list(rollout.notes)
    if first:
        notes.append(SEPARATE_JOURNALS.format(path=journal.location))
    warn(notes + insecure_warnings([inventory.targets[h] for h in spec.hosts]))
    terminal = Terminal(
        journal, rollout.id, rollout.stop, console, dashboard=dashboard, as_json=as_json
    )
    rollout_id = rollout.id
    book: list[PlaybookBook] = []

    def applied_with(host: str) -> tuple[Playbook, ...]:
        # Read when the first host is rolled back: after the wave's hosts were applied.
        if not book:
            book.append(PlaybookBook.of(journal, rollout_id))
        return book[0].playbooks(host)

    def engine(subscribers: list[Subscriber]) -> Awaitable[WaveResult]:
        if dispatcher is not None:
            report_sites(dispatcher, rollout_id, RunKind.ROLLOUT, subscribers)
        return rollout.run_wave(
            RunOptions(
                wave=wave,
                limit=limit,
                force=force,
                concurrency=concurrency,
                deadline=deadline,
                subscribers=subscribers,
                # on_gate_failure: rollback undoes the halted wave's changes in the same run,
                # each host with the playbook the journal says it was applied with.
                rollback_work=rollback_work(playbook, inventory.domains, playbooks_of=applied_with),
                passwords=passwords,
                dispatcher=dispatcher,
                sites=sites or SiteLimits(),
            )
        )

    try:
        result = terminal.run(engine)
    finally:
        if dispatcher is not None:
            dispatcher.close()
    names = [w.name for w in inventory.waves]
    later = names[names.index(spec.name) + 1 :]
    steps = next_steps(
        result, command, wave_command(inventory_path, playbook_opt, later[0]) if later else None
    )
    if as_json:
        doc = json.loads(summary_json(result, journal, terminal.log.path))
        doc["next"] = steps
        click.echo(json.dumps(doc, indent=2))
    else:
        print_summary(console, terminal.view)
        if result.rollback is not None:
            console.print(rollback_line(result.rollback), highlight=False, soft_wrap=True)
        for line in steps:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
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
@click.option(
    "--continue",
    "go_on",
    is_flag=True,
    help="The inventory or playbook changed in the middle of a rollout: go on with that "
    "rollout and the changed content (recorded in the journal).",
)
@options.concurrency
@options.site_concurrency
@options.deadline
@options.broker
@options.no_worker_after
@options.no_dashboard
@options.as_json
@options.journal
def rollout(
    inventory_path: str | Path,
    playbook_opt: str | Path | None,
    wave: str,
    limit: str | None,
    force: bool,
    go_on: bool,
    concurrency: int,
    site_concurrency: tuple[str, ...],
    deadline: float | None,
    broker: str | None,
    no_worker_after: float | None,
    no_dashboard: bool,
    as_json: bool,
    journal_url: str | None,
) -> None:
    """Roll the playbook out to one wave of the inventory.

    Waves form one rollout per inventory and playbook content: a later wave is refused until
    every earlier wave finished with its gate held. Killed? Run the same command again: it
    resumes the wave. Changed the inventory or playbook in the middle of a rollout? The run is
    refused with what changed, until you choose: --continue, or roll that rollout back first.
    With --broker, each host runs on a worker of its site (raorch worker --site NAME).
    """

    console = Console()
    sites = site_limits(site_concurrency)
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
        go_on=go_on,
        broker=broker,
        sites=sites,
        no_worker_after=no_worker_after,
        journal_url=journal_url,
    )
    raise click.exceptions.Exit(int(code))
