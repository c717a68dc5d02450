"""`raorch rollback`: restore exactly what was there before raorch changed it.

For every host that raorch changed in the rollout (or one wave of it), the snapshot the
journal kept is restored: values that were absent are deleted again, types and data as they
were, helpers removed from Administrators only if raorch added them, each firewall rule's
Enabled as it was. A setting someone else changed since raorch set it is a ``conflict``: it is
reported and left alone unless ``--force``. Running it twice changes nothing the second time.

It restores from the journal alone: the snapshot, and the playbook each host was applied with
(kept in the journal), never the playbook file. Hosts are reached through the inventory (the
one given, else the rollout's), and a host it no longer names as the journal recorded it. It
never ends by saying "restored" or "nothing to roll back" while another rollout of the journal
still holds hosts it changed: it names them, and ``--all-open`` restores them all.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from raorch.cli import options
from raorch.cli.dashboard import should_use_dashboard
from raorch.cli.errors import handle_errors
from raorch.cli.journal import find_rollout, open_journal
from raorch.cli.plain import print_summary, say
from raorch.cli.rollout import passwords_for
from raorch.cli.session import Terminal, insecure_warnings, warn
from raorch.cli.workers import broker_dispatcher, refuse_prompted, report_sites, site_limits
from raorch.engine.broker import CeleryDispatcher
from raorch.engine.contents import target_from_json
from raorch.engine.dispatch import ControllerPasswords
from raorch.engine.rollback import Rollback, RollbackOptions, RollbackResult
from raorch.engine.runner import SiteLimits
from raorch.engine.store import JournalReader, JournalStore, RolloutRow
from raorch.engine.work import rollback_work
from raorch.models.errors import ExitCode, InputError, Location, Problem, RefusedError
from raorch.models.events import RunKind, Subscriber
from raorch.models.inventory import ResolvedInventory
from raorch.models.load import load_inventory

SHOWN_HOSTS = 5  # host names listed per rollout; the rest are counted


def choose_rollout(journal: JournalReader, rollout_id: str | None, last: bool) -> RolloutRow:
    if rollout_id is None and not last:
        raise RefusedError(
            "say which rollout: --rollout ID or --last", "list them with `raorch history`"
        )
    return find_rollout(journal, rollout_id)


def exit_code_for(result: RollbackResult, canceled: bool) -> ExitCode:
    if canceled:
        return ExitCode.INTERRUPTED
    if result.conflict_hosts or result.failed_hosts:
        return ExitCode.HOSTS_FAILED
    return ExitCode.OK


def _hosts_text(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:SHOWN_HOSTS])
    return shown + (f" and {len(hosts) - SHOWN_HOSTS} more" if len(hosts) > SHOWN_HOSTS else "")


def still_changed(journal: JournalReader, besides: set[str]) -> dict[str, list[str]]:
    """Rollouts of the journal (other than ``besides``) with hosts they changed and no rollback
    restored, newest first: rollout id -> those hosts."""
    out: dict[str, list[str]] = {}
    for row in reversed(journal.open_rollouts()):
        if row.id in besides:
            continue
        hosts = journal.unrestored(row.id)
        if hosts:
            out[row.id] = hosts
    return out


def still_changed_lines(journal: JournalReader, others: dict[str, list[str]]) -> list[str]:
    if not others:
        return []
    lines = ["other rollouts in this journal still hold hosts they changed (not restored):"]
    for rollout_id, hosts in others.items():
        waves = ", ".join(f"{w.name} {w.state.value}" for w in journal.waves(rollout_id))
        lines.append(
            f"  {rollout_id} ({waves}): {len(hosts)} host(s): {_hosts_text(hosts)}; "
            f"restore them: raorch rollback --rollout {rollout_id}"
        )
    lines.append("restore every one of them: raorch rollback --all-open")
    return lines


def reach(
    journal: JournalReader, row: RolloutRow, inventory_opt: str | None, hosts: list[str]
) -> tuple[ResolvedInventory, list[str]]:
    """How to reach the hosts to restore: the inventory given (else the rollout's, if it still
    loads); a host it does not name, as the journal recorded it when it was changed."""
    notes: list[str] = []
    inventory: ResolvedInventory | None = None
    if inventory_opt is not None:
        inventory = load_inventory(inventory_opt)
    elif Path(row.inventory).exists():
        try:
            inventory = load_inventory(row.inventory)
        except InputError as error:
            first = error.problems[0] if error.problems else error.message
            notes.append(
                f"the inventory {row.inventory} does not load now ({first}); hosts are reached "
                "as the journal recorded them"
            )
    else:
        notes.append(
            f"the inventory {row.inventory} is gone; hosts are reached as the journal recorded them"
        )
    targets = dict(inventory.targets) if inventory is not None else {}
    recorded = journal.targets(row.id)
    from_journal = [h for h in hosts if h not in targets and h in recorded]
    for host in from_journal:
        targets[host] = target_from_json(recorded[host])
    if from_journal and inventory is not None:
        notes.append(
            f"{len(from_journal)} host(s) the inventory no longer names are reached as the "
            f"journal recorded them: {_hosts_text(from_journal)}"
        )
    if inventory is None:
        contents = journal.contents(row.id)
        domains: tuple[str, ...] = ()
        if contents and contents[-1].inventory_json:
            domains = tuple(json.loads(contents[-1].inventory_json)["domains"])
        inventory = ResolvedInventory(row.inventory, None, domains, targets, ())
    else:
        inventory = dataclasses.replace(inventory, targets=targets)
    return inventory, notes


def choose_rollouts(
    journal: JournalReader, rollout_id: str | None, last: bool, all_open: bool
) -> list[RolloutRow]:
    if all_open:
        if rollout_id is not None or last:
            raise InputError(
                [
                    Problem(
                        Location("--all-open"),
                        "--all-open cannot be combined with --rollout or --last",
                        "give one of them",
                    )
                ]
            )
        rows = [
            r for r in reversed(journal.open_rollouts()) if journal.unrestored(r.id)
        ]  # newest first: a later rollout over the same hosts is undone before an earlier one
        return rows
    return [choose_rollout(journal, rollout_id, last)]


@dataclasses.dataclass
class _Options:
    wave: str | None
    limit: str | None
    force: bool
    inventory_opt: str | None
    concurrency: int
    deadline: float | None
    dashboard: bool
    as_json: bool
    broker: str | None = None  # through the workers of the hosts' sites
    sites: SiteLimits = dataclasses.field(default_factory=SiteLimits)
    no_worker_after: float | None = None


def _nothing(
    journal: JournalReader, row: RolloutRow, engine_: Rollback, console: Console, opts: _Options
) -> tuple[ExitCode, dict[str, Any]]:
    restored_before = bool(journal.rolled_back(row.id))
    left = journal.unrestored(row.id)
    message = f"nothing to roll back in rollout {row.id}: "
    if left:
        message += "no host it changed is left in this --wave / --limit"
    elif restored_before:
        message += "every host it changed is rolled back already"
    else:
        message += "it changed no host"
    # Earlier runs narrowed to waves or hosts may have restored the last of them.
    closed = engine_.close_if_done()
    if closed:
        message += "; the rollout is closed (a new rollout starts afresh)"
    if not opts.as_json:
        say(console, message)
        if left:
            say(
                console,
                f"rollout {row.id} still holds {len(left)} host(s) it changed: "
                f"{_hosts_text(left)}; raorch rollback --rollout {row.id}",
            )
    doc = {
        "rollout": row.id,
        "ran": 0,
        "counts": {},
        "conflicts": {},
        "failed_hosts": [],
        "closed": closed,
        "changed_none": not left and not restored_before,
    }
    return ExitCode.OK, doc


def _one(
    journal: JournalStore, row: RolloutRow, console: Console, opts: _Options
) -> tuple[ExitCode, dict[str, Any]]:
    """Roll back one rollout: its exit code and its JSON document."""
    engine_ = Rollback(journal, row, ResolvedInventory(row.inventory, None, (), {}, ()))
    todo = engine_.candidates(opts.wave, opts.limit)
    if not todo:
        return _nothing(journal, row, engine_, console, opts)
    options = _prepare(journal, row, engine_, [h for h, _ in todo], opts)
    terminal = Terminal(
        journal, row.id, engine_.stop, console, dashboard=opts.dashboard, as_json=opts.as_json
    )

    dispatcher = options.dispatcher  # with --broker: the workers'

    def engine(subscribers: list[Subscriber]) -> Awaitable[RollbackResult]:
        if isinstance(dispatcher, CeleryDispatcher):
            report_sites(dispatcher, row.id, RunKind.ROLLBACK, subscribers)
        return engine_.run(dataclasses.replace(options, subscribers=subscribers))

    try:
        result = terminal.run(engine)
    finally:
        if dispatcher is not None:
            dispatcher.close()
    conflicts = journal.rollback_details(row.id, result.conflict_hosts)
    if not opts.as_json:
        _print_one(console, terminal, journal, row, result, conflicts, engine_.stop.requested)
    doc = {
        "rollout": row.id,
        "ran": result.ran,
        "counts": {o.value: n for o, n in sorted(result.counts.items())},
        "conflicts": conflicts,
        "failed_hosts": list(result.failed_hosts),
        "closed": result.closed,
    }
    return exit_code_for(result, engine_.stop.requested), doc


def _prepare(
    journal: JournalStore, row: RolloutRow, engine_: Rollback, names: list[str], opts: _Options
) -> RollbackOptions:
    """Before any host is touched: the playbooks (the engine refuses what it cannot restore
    from), how each host is reached, the passwords (asked now), the warnings."""
    playbook, book = engine_.playbooks(names)
    inventory, notes = reach(journal, row, opts.inventory_opt, names)
    engine_.inventory = inventory
    hosts = [h for h in names if h in inventory.targets]
    targets = [inventory.targets[h] for h in hosts]
    dispatcher: CeleryDispatcher | None = None
    passwords: ControllerPasswords | None = None
    if opts.broker is not None:
        # The workers read the playbooks and the snapshots from the journal they share, and
        # the passwords where they run: nothing is asked here.
        refuse_prompted(targets)
        dispatcher = broker_dispatcher(opts.broker, targets, opts.no_worker_after)
    else:
        passwords = passwords_for(inventory, hosts)
    warn(notes + insecure_warnings(targets))
    return RollbackOptions(
        work=rollback_work(playbook, inventory.domains, playbooks_of=book.playbooks),
        force=opts.force,
        passwords=passwords,
        wave=opts.wave,
        limit=opts.limit,
        concurrency=opts.concurrency,
        deadline=opts.deadline,
        dispatcher=dispatcher,
        sites=opts.sites,
    )


def _print_one(
    console: Console,
    terminal: Terminal,
    journal: JournalStore,
    row: RolloutRow,
    result: RollbackResult,
    conflicts: dict[str, list[str]],
    stopped: bool,
) -> None:
    print_summary(console, terminal.view)
    counts = ", ".join(f"{n} {o.value}" for o, n in sorted(result.counts.items()))
    say(console, f"rollback of {row.id}: {counts}")
    for host, details in conflicts.items():
        say(console, f"conflict on {host}:")
        for line in details:
            say(console, f"    {line}")
    if conflicts:
        say(console, "left alone; run again with --force to restore them anyway")
    left = journal.unrestored(row.id)
    if result.closed:
        say(
            console,
            f"every host rollout {row.id} changed is restored; the rollout is closed "
            "(a new rollout starts afresh)",
        )
    elif left and not stopped:
        say(
            console,
            f"rollout {row.id} still holds {len(left)} host(s) it changed: "
            f"{_hosts_text(left)}; raorch rollback --rollout {row.id}",
        )
    terminal.print_where()


def _each(
    journal: JournalStore, rows: list[RolloutRow], console: Console, opts: _Options
) -> tuple[ExitCode, list[dict[str, Any]]]:
    """Roll back each rollout in turn (stopping at an interrupted one): the worst exit code
    and each one's JSON document."""
    code = ExitCode.OK
    docs: list[dict[str, Any]] = []
    for row in rows:
        one, doc = _one(journal, row, console, opts)
        docs.append(doc)
        code = max(code, one)
        if one is ExitCode.INTERRUPTED:
            break
    return code, docs


def _final_code(
    code: ExitCode, docs: list[dict[str, Any]], others: dict[str, list[str]], all_open: bool
) -> ExitCode:
    """The rollout chosen never changed a host, while others hold hosts they changed: "nothing
    to roll back" would be read as "nothing is changed", so it is not a success."""
    if (
        not all_open
        and docs
        and docs[0]["ran"] == 0
        and docs[0].get("changed_none")
        and others
        and code is ExitCode.OK
    ):
        return ExitCode.REFUSED
    return code


def _json_document(
    docs: list[dict[str, Any]], others: dict[str, list[str]], code: ExitCode, all_open: bool
) -> str:
    for doc in docs:
        doc.pop("changed_none", None)
    out: dict[str, Any] = {"rollouts": docs} if all_open else dict(docs[0])
    out["still_changed"] = others
    out["exit_code"] = int(code)
    return json.dumps(out, indent=2)


@click.command("rollback")
@click.option("--rollout", "rollout_id", default=None, help="The rollout to undo (see history).")
@click.option("--last", is_flag=True, help="Undo the most recent rollout.")
@click.option(
    "--all-open",
    is_flag=True,
    help="Undo every rollout of the journal that still holds hosts it changed, newest first.",
)
@click.option("--wave", default=None, help="Only this wave's hosts.")
@options.limit
@click.option("--force", is_flag=True, help="Restore over settings someone else changed since.")
@click.option(
    "--inventory",
    "inventory_opt",
    default=None,
    type=click.Path(dir_okay=False),
    help="Reach the hosts through this inventory (default: the one the rollout used; a host "
    "it no longer names is reached as the journal recorded it).",
)
@options.concurrency
@options.site_concurrency
@options.deadline
@options.broker
@options.no_worker_after
@options.no_dashboard
@options.as_json
@options.journal
@handle_errors
def rollback(
    rollout_id: str | None,
    last: bool,
    all_open: bool,
    wave: str | None,
    limit: str | None,
    force: bool,
    inventory_opt: str | None,
    concurrency: int,
    site_concurrency: tuple[str, ...],
    deadline: float | None,
    broker: str | None,
    no_worker_after: float | None,
    no_dashboard: bool,
    as_json: bool,
    journal_url: str | None,
) -> None:
    """Restore every host raorch changed in a rollout (or wave) from its snapshot.

    What raorch wrote is read from the journal (the snapshot and the playbook each host was
    applied with): the playbook file may have changed or be gone. With --broker, each host
    is restored by a worker of its site (raorch worker --site NAME).
    """
    console = Console()
    journal = open_journal(journal_url)
    if all_open and wave is not None:
        raise InputError(
            [Problem(Location("--wave"), "--all-open takes every wave", "leave out --wave")]
        )
    rows = choose_rollouts(journal, rollout_id, last, all_open)
    opts = _Options(
        wave,
        limit,
        force,
        inventory_opt,
        concurrency,
        deadline,
        not as_json and should_use_dashboard(no_dashboard, sys.stdout),
        as_json,
        broker,
        site_limits(site_concurrency),
        no_worker_after,
    )
    code, docs = _each(journal, rows, console, opts)
    others = still_changed(journal, {r.id for r in rows})
    code = _final_code(code, docs, others, all_open)
    if as_json:
        click.echo(_json_document(docs, others, code, all_open))
    else:
        if all_open and not rows:
            say(console, "nothing to roll back: no rollout in this journal holds a host it changed")
        for line in still_changed_lines(journal, others):
            say(console, line)
    journal.close()
    raise click.exceptions.Exit(int(code))
