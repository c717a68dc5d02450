"""`raorch verify`: read-only compliance of each host against the playbook.

What a change board or an auditor asks for: per host ``compliant``, ``drifted`` (each differing
value, expected vs found), ``refused`` (the pre-flight reason) or ``unreachable``. Nothing is
written to a host; no journal is needed. When the journal holds a rollout of this inventory and
playbook, the verdicts are recorded there (the change report, ``raorch report``, shows them).

Exit codes (docs/exit-codes.md): 0 when every eligible host was read and is compliant;
5 (NOT_COMPLIANT) when one has drifted; 1 (HOSTS_FAILED) when a reachable host could not be
read completely (the verdict is then unknown); 7 (UNREACHABLE) when a host could not be reached
or refused the credentials, so nothing was checked there (``--allow-unreachable``: not counted).
A compliance job must not pass when nothing was checked.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from raorch.cli import options
from raorch.cli.credentials import credentials_for
from raorch.cli.errors import handle_errors
from raorch.cli.journal import choose_journal, find_journal
from raorch.cli.plan import (
    choose_targets,
    gpo_json,
    group_policy_json,
    group_policy_lines,
)
from raorch.cli.session import insecure_warnings, warn
from raorch.engine.contents import content_sha
from raorch.engine.host import HostMode, HostReport
from raorch.engine.rollout import campaign_key
from raorch.engine.work import read_hosts, verify_rows
from raorch.models.errors import ExitCode
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.outcomes import Outcome

ORDER = (Outcome.COMPLIANT, Outcome.DRIFTED, Outcome.REFUSED, Outcome.UNREACHABLE, Outcome.FAILED)


def exit_code(reports: Sequence[HostReport], allow_unreachable: bool = False) -> ExitCode:
    """The worst verdict first: drift, then a host read incompletely, then hosts not checked."""
    outcomes = {r.outcome for r in reports}
    if Outcome.DRIFTED in outcomes:
        return ExitCode.NOT_COMPLIANT
    if Outcome.FAILED in outcomes:
        return ExitCode.HOSTS_FAILED
    if Outcome.UNREACHABLE in outcomes and not allow_unreachable:
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def unreachable_note(reports: Sequence[HostReport], allow_unreachable: bool) -> str | None:
    """Why the exit code is UNREACHABLE, and what to do, for stderr."""
    down = [r.host for r in reports if r.outcome is Outcome.UNREACHABLE]
    if not down or allow_unreachable:
        return None
    sample = ", ".join(down[:5]) + (" ..." if len(down) > 5 else "")
    return (
        f"{len(down)} of {len(reports)} host(s) were not checked (unreachable or credentials "
        f"refused: {sample}); exit {int(ExitCode.UNREACHABLE)}. Check WinRM and the password, or "
        "pass --allow-unreachable to accept hosts that cannot be reached."
    )


def report_lines(report: HostReport) -> list[str]:
    profile = f" [{report.profile.value}]" if report.profile is not None else ""
    head = f"{report.host}{profile}: {report.outcome.value}"
    if report.reason is not None and report.outcome is not Outcome.COMPLIANT:
        head += f" ({report.reason})"
    lines = [head, *(f"    {d}" for d in report.differences)]
    if report.outcome in (Outcome.COMPLIANT, Outcome.DRIFTED):
        lines += group_policy_lines(report)
    return lines


def report_json(report: HostReport) -> dict[str, Any]:
    return {
        "host": report.host,
        "outcome": report.outcome.value,
        "profile": None if report.profile is None else report.profile.value,
        "stage": None if report.reason is None else report.reason.stage.value,
        "reason": None if report.reason is None else report.reason.message,
        "differences": [
            {"item": d.item, "expected": d.expected, "found": d.found, "note": d.note}
            for d in report.differences
        ],
        "gpo": [gpo_json(f) for f in report.gpo],
        "group_policy": group_policy_json(report),
    }


def summary_line(reports: Sequence[HostReport]) -> str:
    counts = Counter(r.outcome for r in reports)
    parts = [f"{counts.get(o, 0)} {o.value}" for o in ORDER if counts.get(o) or o in ORDER[:2]]
    return f"{len(reports)} host(s): " + ", ".join(parts)


def record_verify(
    inventory_path: Path,
    playbook_path: Path,
    reports: Sequence[HostReport],
    journal_url: str | None = None,
) -> str:
    """Record the verdicts with the latest rollout of this inventory and playbook, if the
    journal has one (never creating a journal): its id, or ""."""
    journal = find_journal(journal_url)
    if journal is None:
        return ""
    try:
        row = journal.latest_rollout_of(campaign_key(inventory_path, playbook_path))
        if row is None:
            return ""
        journal.record_verify(row.id, verify_rows(reports, time.time()))
        return row.id
    finally:
        journal.close()


@click.command("verify")
@options.inventory
@options.playbook
@click.option("--wave", default=None, help="Only the hosts of this wave (default: every host).")
@options.limit
@options.concurrency
@options.as_json
@click.option(
    "--allow-unreachable",
    is_flag=True,
    help="Exit 0 even when hosts could not be reached (they are still reported).",
)
@options.journal
@handle_errors
def verify(
    inventory_path: str | Path,
    playbook_opt: str | Path | None,
    wave: str | None,
    limit: str | None,
    concurrency: int,
    as_json: bool,
    allow_unreachable: bool,
    journal_url: str | None,
) -> None:
    """Prove compliance: read every host and compare it with the playbook. Writes nothing.

    Exit 0 when every eligible host was read and is compliant, 5 when one has drifted, 1 when
    a host could not be read completely, 7 when a host could not be reached (unless
    --allow-unreachable).
    """
    choose_journal(journal_url)  # a wrong --journal is told before any host is contacted
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
        HostMode.VERIFY,
        concurrency=concurrency,
        passwords=passwords,
    )
    code = exit_code(reports, allow_unreachable)
    recorded = record_verify(Path(inventory.path), playbook_path, reports, journal_url)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "playbook": playbook.name,
                    "counts": {o.value: n for o, n in Counter(r.outcome for r in reports).items()},
                    "hosts": [report_json(r) for r in reports],
                    "exit_code": int(code),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for report in reports:
            for line in report_lines(report):
                click.echo(line)
        if recorded:  # before the summary, which stays the last line (scripts read it)
            click.echo(f"recorded with rollout {recorded} (raorch report {recorded})")
        click.echo(summary_line(reports))
    note = unreachable_note(reports, allow_unreachable)
    if note is not None:
        warn([note])
    raise click.exceptions.Exit(int(code))
