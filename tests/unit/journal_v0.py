"""A journal written by raorch before journal versions were kept (version 0), and what that
raorch read from it: the fixture of test_journal_store.py's migration test.

``fixtures/journal-v0.db`` was written, and ``fixtures/journal-v0.json`` read, by raorch at
commit ae58279 (the last one before versions) running ``make`` below::

    git archive ae58279 src | tar -x -C /tmp/raorch-v0
    PYTHONPATH=/tmp/raorch-v0/src python tests/unit/journal_v0.py tests/unit/fixtures

The engine ran (scripted host work, real SQLite): two waves whose hosts are not in name order,
a failed host, a rollback with a conflict, a verify, a second content revision adding a wave,
and a second rollout. ``read_all`` asks the journal every question of the read side; the
migration test asks the migrated copy the same and expects the same answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from raorch.engine.journal import Journal
from raorch.engine.rollback import Rollback, RollbackOptions
from raorch.engine.rollout import Rollout, RunOptions

try:  # the generator runs on raorch at ae58279; today's tests import only read_all
    from raorch.engine.runner import HostPlatform, WorkContext, WorkResult  # type: ignore[attr-defined]
except ImportError:
    from raorch.engine.dispatch import HostPlatform, WorkContext, WorkResult

try:
    from raorch.engine.store import VerifyRow
except ImportError:  # raorch before journal versions (ae58279): the rows were the journal's
    from raorch.engine.journal import VerifyRow  # type: ignore[attr-defined,no-redef]
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    GateAction,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
    WaveSpec,
)
from raorch.models.load import load_playbook
from raorch.models.outcomes import Outcome, Reason, Stage

REPO = Path(__file__).resolve().parents[2]
CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "RAORCH_PW"))
WIN10 = HostPlatform("Microsoft Windows 10 Enterprise", "10.0.19045", "modern")


def _plain(value: Any) -> Any:
    """A read's answer as JSON: rows as objects, sets sorted, dicts as [key, value] pairs in
    the order read (an order the read side promises is compared as such)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return [[_plain(k), _plain(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unordered(value: dict[str, Any]) -> Any:
    """A dict the read side gives in no promised order."""
    return _plain(dict(sorted(value.items())))


def read_all(journal: Journal) -> dict[str, Any]:
    """Every question of the read side, for every rollout and host of the journal."""
    doc: dict[str, Any] = {
        "rollouts": _plain(journal.rollouts()),
        "last_rollout": _plain(journal.last_rollout()),
        "open_rollouts": _plain(journal.open_rollouts()),
        "unfinished_runs": sorted(journal.unfinished_runs()),
        "by_rollout": {},
    }
    for row in journal.rollouts():
        rid = row.id
        hosts = journal.hosts(rid)
        names = [h.host for h in hosts]
        doc["by_rollout"][rid] = {
            "rollout": _plain(journal.rollout(rid)),
            "find_rollout": _plain(journal.find_rollout(row.campaign)),
            "latest_rollout_of": _plain(journal.latest_rollout_of(row.campaign)),
            "rollout_closed": journal.rollout_closed(rid),
            "waves": _plain(journal.waves(rid)),
            "hosts": _plain(hosts),
            "hosts_by_wave": {w: _plain(journal.hosts(rid, w)) for w in row.waves},
            "has_hosts": journal.has_hosts(rid),
            "runs": _plain(journal.runs(rid)),
            "contents": _plain(journal.contents(rid)),
            "current_revision": journal.current_revision(rid),
            "host_revisions": _unordered(journal.host_revisions(rid)),
            "targets": _unordered(journal.targets(rid)),
            "unrestored": journal.unrestored(rid),
            "snapshots": _unordered(journal.snapshots(rid)),
            "snapshot_hosts": _plain(journal.snapshot_hosts(rid)),
            "rolled_back": _plain(journal.rolled_back(rid)),
            "rollback_outcomes": _unordered(journal.rollback_outcomes(rid)),
            "rollback_details": _unordered(journal.rollback_details(rid, names)),
            "rollbacks": _plain(journal.rollbacks(rid)),
            "applied_all": _plain(journal.applied_all(rid)),
            "platforms": _unordered(journal.platforms(rid)),
            "verifications": _plain(journal.verifications(rid)),
            "per_host": {
                h: {
                    "snapshot": journal.snapshot(rid, h),
                    "snapshot_taken_at": journal.snapshot_taken_at(rid, h),
                    "applied": journal.applied(rid, h),
                    "timeline": _plain(journal.timeline(rid, h)),
                }
                for h in names
            },
        }
    return doc


def _apply(target: Target, ctx: WorkContext) -> WorkResult:
    ctx.on_snapshot(json.dumps({"host": target.name, "values": {"fAllowToGetHelp": 0}}))
    if target.name == "ws-05":
        return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, "access denied"), platform=WIN10)
    if target.name == "ws-02":
        return WorkResult(Outcome.UNCHANGED, platform=WIN10)
    applied = json.dumps([{"kind": "value", "name": "fAllowToGetHelp", "to": 1}])
    return WorkResult(Outcome.CHANGED, changes=1, applied=applied, platform=WIN10)


def _restore(target: Target, ctx: WorkContext) -> WorkResult:
    if target.name == "ws-05":
        return WorkResult(
            Outcome.CONFLICT,
            Reason(Stage.ROLLBACK, "changed since raorch set it"),
            details=("fAllowToGetHelp: expected 1, found 0",),
        )
    return WorkResult(Outcome.ROLLED_BACK, changes=1)


def make(out: Path, work_dir: Path) -> None:
    inventory_file = work_dir / "fleet.yaml"
    inventory_file.write_text("fleet: v0\n", encoding="utf-8")
    playbook_file = work_dir / "playbook.yaml"
    playbook_file.write_bytes((REPO / "playbooks" / "offer-remote-assistance.yaml").read_bytes())
    waves = (
        WaveSpec("canary", ("ws-03", "ws-01"), 50.0, None, GateAction.HALT, False, None),
        WaveSpec("pilot", ("ws-04", "ws-02", "ws-05"), 50.0, None, GateAction.HALT, False, None),
    )
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, w.name) for w in waves for h in w.hosts}
    inventory = ResolvedInventory(
        str(inventory_file), str(playbook_file), ("CORP",), targets, waves
    )
    journal = Journal(out / "journal-v0.db")
    rollout = Rollout(journal, inventory, playbook_file, _apply, load_playbook(playbook_file))
    for wave in ("canary", "pilot"):
        options = RunOptions(wave=wave, concurrency=1, subscribers=[journal.record])
        asyncio.run(rollout.run_wave(options))
    rollback = Rollback(journal, rollout.row, inventory)
    asyncio.run(
        rollback.run(
            RollbackOptions(
                work=_restore, wave="pilot", concurrency=1, subscribers=[journal.record]
            )
        )
    )
    drift = ("fAllowToGetHelp: expected 1, found 0",)
    journal.record_verify(
        rollout.id,
        [
            VerifyRow("ws-01", Outcome.COMPLIANT, None, None, (), 100.0),
            VerifyRow("ws-05", Outcome.DRIFTED, Stage.VERIFY, "drifted", drift, 101.0),
        ],
    )
    # ws-01 again: its latest verdict replaces the first, and comes last.
    journal.record_verify(rollout.id, [VerifyRow("ws-01", Outcome.DRIFTED, None, None, (), 102.0)])
    content = rollout.content
    journal.add_revision(rollout.id, content, ("canary", "pilot", "broad"), "waves: added broad")
    journal.open_rollout("f" * 64, str(inventory_file), str(playbook_file), ("all",), "sha-b")
    (out / "journal-v0.json").write_text(
        json.dumps(read_all(journal), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    journal.close()


if __name__ == "__main__":
    import tempfile

    # The journal's directory gets the run locks (rollouts/<id>/run.lock): made apart, and only
    # the journal is kept.
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        make(home, Path(tmp))
        out = Path(sys.argv[1])
        for name in ("journal-v0.db", "journal-v0.json"):
            (out / name).write_bytes((home / name).read_bytes())
