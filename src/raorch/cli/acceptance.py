"""`raorch acceptance`: try everything raorch does on ONE test host, and print a report.

Before the first rollout to a kind of Windows (XP, 2003, a German Windows 10, ...), point this
at one test host of that kind: it runs every read, then seeds edge values, applies the
playbook, verifies, rolls back, checks the exact round trip and leaves the host as it was
(docs/windows.md, section 14). The report is meant to be attached to a bug.

Exit codes (docs/exit-codes.md): 0 every check passed; 1 a check failed (the report says which
and what was found); 2 bad input (also: --limit must name exactly one host).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from raorch.cli import options
from raorch.cli.credentials import credentials_for
from raorch.cli.errors import handle_errors
from raorch.cli.plan import choose_targets
from raorch.cli.session import insecure_warnings, warn
from raorch.engine.acceptance import AcceptanceReport, Check, CheckStatus, run_acceptance
from raorch.engine.paths import state_home
from raorch.models.errors import ExitCode, InputError, Location, Problem
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path

MARK = {CheckStatus.PASSED: "ok  ", CheckStatus.FAILED: "FAIL", CheckStatus.SKIPPED: "skip"}


def check_lines(check: Check) -> list[str]:
    return [
        f"[{MARK[check.status]}] {check.name}: {check.detail}",
        *(f"         {d}" for d in check.differences),
    ]


def report_text(report: AcceptanceReport) -> list[str]:
    lines = [
        f"raorch {report.version} acceptance run: {report.host} ({report.address})",
    ]
    f = report.facts
    if f is not None:
        lines.append(
            f"  {f.caption.strip()} {f.os_version}, PowerShell {f.ps_version}, UI {f.language}, "
            f"domain {f.domain} (DomainRole {f.domain_role}), 32-bit on 64-bit: {f.wow64}, "
            f"profile {report.profile}"
        )
    lines.append("reads:")
    for read in report.reads:
        result = read.summary if read.ok else f"{read.error_kind}: {read.error}".strip()
        lines.append(f"  {'ok  ' if read.ok else 'err '} {read.operation}: {result}")
    lines.append("checks:")
    for check in report.checks:
        lines.extend("  " + line for line in check_lines(check))
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"acceptance {verdict}: {report.host}")
    return lines


def report_json(report: AcceptanceReport) -> dict[str, Any]:
    f = report.facts
    return {
        "host": report.host,
        "address": report.address,
        "raorch": report.version,
        "passed": report.passed,
        "profile": report.profile,
        "facts": None
        if f is None
        else {
            "os_version": f.os_version,
            "caption": f.caption,
            "sku": f.sku,
            "ps_version": f.ps_version,
            "language": f.language,
            "domain": f.domain,
            "domain_role": f.domain_role,
            "wow64": f.wow64,
        },
        "reads": [
            {
                "operation": r.operation,
                "ok": r.ok,
                "error_kind": None if r.error_kind is None else r.error_kind.value,
                "error": r.error,
                "summary": r.summary,
            }
            for r in report.reads
        ],
        "checks": [
            {
                "name": c.name,
                "status": c.status.value,
                "detail": c.detail,
                "differences": [
                    {"item": d.item, "expected": d.expected, "found": d.found}
                    for d in c.differences
                ],
            }
            for c in report.checks
        ],
    }


@click.command("acceptance")
@options.inventory
@options.playbook
@click.option(
    "--limit",
    required=True,
    help="The ONE test host to try everything on (its inventory name).",
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report to this file (JSON when it ends in .json, else text).",
)
@options.as_json
@handle_errors
def acceptance(
    inventory_path: Path,
    playbook_opt: Path | None,
    limit: str,
    out: Path | None,
    as_json: bool,
) -> None:
    """Try every read and write raorch makes on one test host, and leave it as it was.

    Seeds edge values (REG_EXPAND_SZ with %vars%, DWORD 0xFFFFFFFF, empty REG_MULTI_SZ and
    REG_BINARY, a helper already in Administrators), applies the playbook, verifies, rolls
    back, and checks the round trip is exact. Exit 0 when every check passed, 1 otherwise.
    """
    inventory = load_inventory(inventory_path)
    playbook = load_playbook(resolve_playbook_path(inventory, playbook_opt))
    targets = choose_targets(inventory, None, limit)
    if len(targets) != 1:
        raise InputError(
            [
                Problem(
                    Location(str(inventory.path), path="--limit"),
                    f"--limit {limit!r} matches {len(targets)} hosts; the acceptance run writes "
                    "to its host, so it takes exactly one",
                    "name one test host, e.g. --limit " + (targets[0].name if targets else "HOST"),
                )
            ]
        )
    [target] = targets
    password = credentials_for(inventory, targets).password(target.credentials)
    warn(insecure_warnings(targets))

    def progress(check: Check) -> None:
        if not as_json:
            click.echo("\n".join(check_lines(check)), err=True)

    report = run_acceptance(
        target, password, playbook, inventory.domains, state_home(), on_check=progress
    )
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(report_text(report)))
    if out is not None:
        text = (
            json.dumps(report_json(report), indent=2, ensure_ascii=False)
            if out.suffix.lower() == ".json"
            else "\n".join(report_text(report)) + "\n"
        )
        out.write_text(text, encoding="utf-8")
        click.echo(f"report written to {out}", err=True)
    raise click.exceptions.Exit(int(ExitCode.OK if report.passed else ExitCode.HOSTS_FAILED))
