"""`raorch history` and `raorch show`: what the journal remembers.

``history`` lists every rollout with its waves and outcome counts; ``show ROLLOUT --host H``
is one host's timeline: when its snapshot was taken, what raorch changed, every outcome it
had (rollout attempts, rollbacks, with reasons and conflicts).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import click

from raorch.cli import options
from raorch.cli.errors import handle_errors
from raorch.cli.journal import find_rollout, open_journal
from raorch.engine.store import JournalReader, RolloutRow
from raorch.models.errors import RefusedError
from raorch.planning.plan import changes_from_json


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def rollout_document(journal: JournalReader, row: RolloutRow) -> dict[str, Any]:
    hosts = journal.hosts(row.id)
    rollbacks = journal.rollback_outcomes(row.id)
    waves = []
    for wave in journal.waves(row.id):
        counts = Counter(h.outcome.value for h in hosts if h.wave == wave.name and h.outcome)
        waves.append(
            {
                "name": wave.name,
                "state": wave.state.value,
                "forced": wave.forced,
                "gate_held": wave.gate_held,
                "counts": dict(sorted(counts.items())),
            }
        )
    return {
        "id": row.id,
        "created": _when(row.created_at),
        "status": "closed (rolled back)" if row.closed_at is not None else "open",
        "inventory": row.inventory,
        "playbook": row.playbook,
        "waves": waves,
        "rollback": dict(sorted(Counter(o.value for o in rollbacks.values()).items())),
        # The content it went on with after the files changed (rollout --continue).
        "contents": [
            {"revision": c.revision, "at": _when(c.at), "note": c.note}
            for c in journal.contents(row.id)
        ],
        "not_restored": len(journal.unrestored(row.id)),
    }


@click.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@options.journal
@handle_errors
def history(as_json: bool, journal_url: str | None) -> None:
    """List the rollouts in the journal with their waves and counts."""
    journal = open_journal(journal_url)
    docs = [rollout_document(journal, row) for row in journal.rollouts()]
    journal.close()
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    if not docs:
        click.echo("no rollouts in the journal yet")
    for doc in docs:
        click.echo(f"{doc['id']}  {doc['created']}  {doc['status']}")
        click.echo(f"  inventory {doc['inventory']}")
        click.echo(f"  playbook  {doc['playbook']}")
        for wave in doc["waves"]:
            counts = ", ".join(f"{n} {o}" for o, n in wave["counts"].items()) or "no host yet"
            forced = " (forced)" if wave["forced"] else ""
            click.echo(f"  wave {wave['name']}: {wave['state']}{forced}; {counts}")
        if doc["rollback"]:
            counts = ", ".join(f"{n} {o}" for o, n in doc["rollback"].items())
            click.echo(f"  rollback: {counts}")
        for content in doc["contents"][1:]:
            click.echo(f"  content revision {content['revision']} ({content['at']}):")
            click.echo(f"    {content['note']}")
        if doc["not_restored"]:
            click.echo(
                f"  {doc['not_restored']} host(s) changed and not restored "
                f"(raorch rollback --rollout {doc['id']})"
            )


def host_document(journal: JournalReader, row: RolloutRow, host: str) -> dict[str, Any]:
    found = next((h for h in journal.hosts(row.id) if h.host.casefold() == host.casefold()), None)
    if found is None:
        raise RefusedError(
            f"rollout {row.id} never ran host {host!r}",
            f"list its hosts with `raorch show {row.id}`",
        )
    applied = journal.applied(row.id, found.host)
    changes = [] if applied is None else [c.describe() for c in changes_from_json(applied)]
    conflicts = journal.rollback_details(row.id, [found.host])[found.host]
    return {
        "rollout": row.id,
        "host": found.host,
        "wave": found.wave,
        "snapshot_taken": _when(journal.snapshot_taken_at(row.id, found.host)),
        "attempts": found.attempts,
        "outcome": None if found.outcome is None else found.outcome.value,
        "changes": changes,
        "timeline": [
            {
                "at": _when(t.at),
                "run": t.kind.value,
                "outcome": t.outcome.value,
                "stage": None if t.stage is None else t.stage.value,
                "reason": t.reason,
            }
            for t in journal.timeline(row.id, found.host)
        ],
        "rollback_conflicts": conflicts,
    }


@click.command("show")
@click.argument("rollout_id")
@click.option("--host", default=None, help="One host's timeline.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@options.journal
@handle_errors
def show(rollout_id: str, host: str | None, as_json: bool, journal_url: str | None) -> None:
    """One rollout's waves and hosts, or one host's timeline (snapshot, changes, outcomes)."""
    journal = open_journal(journal_url)
    row = find_rollout(journal, rollout_id)
    if host is None:
        doc = rollout_document(journal, row)
        doc["hosts"] = [
            {
                "host": h.host,
                "wave": h.wave,
                "outcome": None if h.outcome is None else h.outcome.value,
                "reason": h.reason,
            }
            for h in journal.hosts(row.id)
        ]
    else:
        doc = host_document(journal, row, host)
    journal.close()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if host is None:
        click.echo(f"{doc['id']}  {doc['status']}  created {doc['created']}")
        for h in doc["hosts"]:
            reason = f"  ({h['reason']})" if h["reason"] else ""
            click.echo(f"  {h['host']:<20} {h['wave']:<10} {h['outcome'] or 'in flight'}{reason}")
        return
    click.echo(f"{doc['host']} in rollout {doc['rollout']}, wave {doc['wave']}")
    click.echo(f"  snapshot taken   {doc['snapshot_taken']}")
    click.echo(f"  attempts         {doc['attempts']}")
    click.echo(f"  outcome          {doc['outcome'] or 'in flight'}")
    if doc["changes"]:
        click.echo("  changes raorch made:")
        for line in doc["changes"]:
            click.echo(f"    {line}")
    click.echo("  timeline:")
    for t in doc["timeline"]:
        reason = f"  {t['stage']}: {t['reason']}" if t["reason"] else ""
        click.echo(f"    {t['at']}  {t['run']:<8} {t['outcome']}{reason}")
    for line in doc["rollback_conflicts"]:
        click.echo(f"    conflict: {line}")
