"""`raorch plan`: what a rollout would change on each host, read-only.

Per host: its profile, the pre-flight verdict, and the exact changes (key, value, before ->
after; members to add; rules to enable). Nothing is written: ``run_host`` in PLAN mode sends
pipeline 1 (reads) only.

Exit codes (docs/exit-codes.md): 0 every host is compliant already (or refused, so a rollout
would not touch it); 4 (CHANGES_PENDING) some host would change; 1 (HOSTS_FAILED) some host
could not be planned (unreachable, a read failed), since the plan is then incomplete.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from raorch.cli import options
from raorch.cli.credentials import credentials_for
from raorch.cli.errors import handle_errors
from raorch.cli.session import insecure_warnings, warn
from raorch.engine.contents import content_sha
from raorch.engine.host import HostMode, HostReport
from raorch.engine.work import read_hosts
from raorch.models.errors import ExitCode
from raorch.models.inventory import ResolvedInventory, Target
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.outcomes import Outcome
from raorch.planning.gpo import GpoFinding
from raorch.planning.plan import Change
from raorch.planning.rsop import RsopStatus
from raorch.planning.selection import require_matches, select_hosts


def choose_targets(
    inventory: ResolvedInventory, wave: str | None, limit: str | None
) -> list[Target]:
    """The hosts of ``--wave`` (or all), narrowed by ``--limit``; a typo is an input error."""
    names = list(inventory.targets)
    if wave is not None:
        names = list(inventory.require_wave(wave).hosts)
    require_matches(names, limit, "of the inventory" if wave is None else f"of wave {wave}")
    return [inventory.targets[n] for n in select_hosts(names, limit)]


def exit_code(reports: Sequence[HostReport]) -> ExitCode:
    outcomes = {r.outcome for r in reports}
    if Outcome.FAILED in outcomes:
        return ExitCode.HOSTS_FAILED
    if Outcome.CHANGED in outcomes:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


# ---------------------------------------------------------------- text


def change_line(change: Change) -> str:
    return change.action()


# Lines per host for its changes or refusals: a playbook of 10,000 helpers must not print
# 10,000 lines for one host. The rest are in `--json`.
HOST_LINES = 12


def capped(lines: list[str], what: str) -> list[str]:
    """The first ``HOST_LINES`` lines, and where the rest are."""
    if len(lines) <= HOST_LINES:
        return lines
    more = len(lines) - HOST_LINES
    return [*lines[:HOST_LINES], f"    ... and {more} more {what} (--json lists every one)"]


def group_policy_lines(report: HostReport) -> list[str]:
    """What Group Policy does to the playbook's values on the host, beside the changes
    (docs/windows.md, section 15): each value a GPO manages (but those a difference of the
    report already names), or why that is unknown."""
    named = {d.item.casefold() for d in report.differences if d.note}
    lines = [f"    GPO: {f.describe()}" for f in report.gpo if f.item.casefold() not in named]
    policy = report.snapshot.group_policy if report.snapshot is not None else None
    if policy is not None and policy.status not in (RsopStatus.KNOWN, RsopStatus.NOT_READ):
        lines.append(f"    Group Policy {policy.describe()}")
    return lines


def gpo_json(finding: GpoFinding) -> dict[str, Any]:
    return {
        "item": finding.item,
        "key": finding.key,
        "name": finding.name,
        "gpo": finding.gpo,
        "relation": finding.relation.value,
        "gpo_sets": finding.found,
        "playbook": finding.wanted,
        "description": finding.describe(),
    }


def group_policy_json(report: HostReport) -> dict[str, Any] | None:
    policy = report.snapshot.group_policy if report.snapshot is not None else None
    if policy is None:
        return None
    return {"status": policy.status.value, "detail": policy.detail}


def report_lines(report: HostReport) -> list[str]:
    profile = f" [{report.profile}]" if report.profile else ""
    caption = f" {report.facts.caption.strip()}," if report.facts else ""
    head = f"{report.host}{profile}{caption}"
    if report.outcome is Outcome.CHANGED:
        lines = [f"{head} {len(report.changes)} change(s):"]
        changes = capped([f"    {change_line(c)}" for c in report.changes], "changes")
        return lines + changes + group_policy_lines(report)
    if report.outcome is Outcome.UNCHANGED:
        return [f"{head} compliant, nothing to change", *group_policy_lines(report)]
    if report.outcome is Outcome.SKIPPED:
        lines = [f"{head} refused by pre-flight, would not be touched:"]
        refusals = [f"    {r.kind.value}: {r.message}" for r in report.refusals]
        return lines + capped(refusals, "refusals")
    reason = f"{report.reason}" if report.reason else "unknown"
    return [f"{head} FAILED: {reason}"]


def summary_line(reports: Sequence[HostReport]) -> str:
    counts = Counter(r.outcome for r in reports)
    return (
        f"{len(reports)} host(s): {counts[Outcome.CHANGED]} would change, "
        f"{counts[Outcome.UNCHANGED]} compliant, {counts[Outcome.SKIPPED]} refused, "
        f"{counts[Outcome.FAILED]} failed"
    )


# ---------------------------------------------------------------- JSON


def change_json(change: Change) -> dict[str, Any]:
    return {"item": change.item, "description": change.action(), **change.action_json()}


def report_json(report: HostReport) -> dict[str, Any]:
    return {
        "host": report.host,
        "outcome": report.outcome.value,
        "profile": report.profile.value if report.profile else None,
        "caption": report.facts.caption.strip() if report.facts else None,
        "reason": None
        if report.reason is None
        else {
            "stage": report.reason.stage.value,
            "message": report.reason.message,
        },
        "refusals": [{"kind": r.kind.value, "message": r.message} for r in report.refusals],
        "changes": [change_json(c) for c in report.changes],
        "gpo": [gpo_json(f) for f in report.gpo],
        "group_policy": group_policy_json(report),
    }


# ---------------------------------------------------------------- the command


@click.command("plan")
@options.inventory
@options.playbook
@click.option("--wave", default=None, help="Only the hosts of this wave (default: every host).")
@options.limit
@options.concurrency
@options.as_json
@handle_errors
def plan(
    inventory_path: str | Path,
    playbook_opt: str | Path | None,
    wave: str | None,
    limit: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Show what a rollout would change on each host, without changing anything.

    Exit 0 when every host is compliant (or refused), 4 when changes are pending, 1 when some
    host could not be read.
    """
    inventory = load_inventory(inventory_path)
    playbook_path = resolve_playbook_path(inventory, playbook_opt)
    playbook = load_playbook(playbook_path)
    targets = choose_targets(inventory, wave, limit)
    passwords = credentials_for(inventory, targets)
    warn(insecure_warnings(targets))
    reports = read_hosts(
        targets,
        playbook,
        content_sha(playbook_path),
        inventory.domains,
        HostMode.PLAN,
        concurrency=concurrency,
        passwords=passwords,
    )
    if as_json:
        document = {
            "playbook": playbook.name,
            "hosts": [report_json(r) for r in reports],
            "exit_code": int(exit_code(reports)),
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for report in reports:
            for line in report_lines(report):
                click.echo(line)
        click.echo(summary_line(reports))
    raise click.exceptions.Exit(int(exit_code(reports)))
