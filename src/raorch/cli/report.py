"""`raorch report`: one rollout's change report, one self-contained HTML file.

For the change-advisory board: what was set, when and by whom, the waves and their gates,
outcomes, charts, refused / failed / conflicting hosts, each host's before and after, and the
latest verify. Read from the journal only; no host is contacted. Built by
``raorch.engine.report`` (the model) and ``raorch.engine.report_html`` (the page).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from raorch.cli import options
from raorch.cli.errors import handle_errors
from raorch.cli.journal import find_rollout, open_journal
from raorch.cli.main import describe_playbook
from raorch.engine.contents import content_sha
from raorch.engine.report import build_report
from raorch.engine.report_html import render_report
from raorch.engine.store import RolloutRow
from raorch.models.errors import RaorchError, RefusedError
from raorch.models.load import load_playbook


def playbook_words(row: RolloutRow) -> tuple[tuple[str, ...], str]:
    """What the rollout set, in words, from the playbook file the journal names; and a note
    when that file is gone or has changed since (the journal keeps its hash, not its text)."""
    path = Path(row.playbook)
    if not path.is_file():
        return (), f"The playbook file {path} is no longer there: what it set cannot be shown."
    try:
        playbook = load_playbook(path)
    except RaorchError as exc:
        return (), f"The playbook file {path} no longer loads ({exc}): what it set cannot be shown."
    note = ""
    if row.playbook_sha and content_sha(path) != row.playbook_sha:
        note = (
            f"The playbook file {path} has changed since this rollout: the words above describe "
            "it as it is now, not necessarily as it was rolled out."
        )
    return tuple(describe_playbook(playbook)), note


@click.command("report")
@click.argument("rollout_id", required=False)
@click.option("--last", is_flag=True, help="The most recent rollout (the default).")
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (default: raorch-report-<rollout>.html here).",
)
@options.journal
@handle_errors
def report(rollout_id: str | None, last: bool, out: Path | None, journal_url: str | None) -> None:
    """Write a rollout's change report: one HTML file, readable offline and printable.

    Reads the journal ($RAORCH_HOME, default ./.raorch); contacts no host. The file is
    owner-only (0600), like the journal: it describes the security settings of every host.
    """
    if last and rollout_id is not None:
        raise click.UsageError("ROLLOUT and --last name the rollout twice; give one of them")
    journal = open_journal(journal_url)
    try:
        row = find_rollout(journal, rollout_id)
        chosen = row.id
        lines, note = playbook_words(row)
        model = build_report(
            journal, chosen, generated_at=time.time(), playbook_lines=lines, playbook_note=note
        )
    finally:
        journal.close()
    page = render_report(model)
    target = out if out is not None else Path(f"raorch-report-{chosen}.html")
    data = page.encode("utf-8")
    try:
        fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(target, 0o600)
    except OSError as exc:
        raise RefusedError(
            f"cannot write the report to {target}: {exc.strerror or exc}",
            "choose a file in a directory you can write to with --out FILE",
        ) from None
    click.echo(
        f"report: {target.resolve()} ({len(data) / 1024:,.0f} KiB; {model.host_count} hosts, "
        f"rollout {chosen}, {model.status.value})"
    )
