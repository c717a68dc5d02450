"""Golden tests: playbook + host (facts and state) in, the exact operation batches out.

The expected batches are readable text in tests/golden/<case>.txt. To regenerate them after a
deliberate change, run with RAORCH_UPDATE_GOLDEN=1 and review the diff before committing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_plan_fixtures import (
    GERMAN_PLAYBOOK,
    PLAYBOOK,
    FakeHost,
    server2003_host,
    w10_de_host,
    w10_host,
    xp_host,
)

from raorch.models.playbook import Playbook
from raorch.models.remote import (
    AddGroupMember,
    DeleteKey,
    DeleteValue,
    GetFacts,
    GetFirewallRules,
    GetGroup,
    GetRegistryPolicy,
    ListKey,
    Operation,
    ReadValues,
    RegType,
    RegValue,
    RemoveGroupMember,
    ResolveAccount,
    RunScheduledTask,
    SetFirewallRule,
    SetValue,
)
from raorch.planning.activation import activation
from raorch.planning.plan import compare, make_plan
from raorch.planning.preflight import preflight
from raorch.planning.profile import HostProfile, host_profile
from raorch.planning.restore import changes_from_snapshot, restore_plan
from raorch.planning.snapshot import Snapshot, build_snapshot, snapshot_reads, state_reads

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def render_value(value: RegValue) -> str:
    if value.type is RegType.BINARY and isinstance(value.data, bytes):
        return f"{value.type} hex:{value.data.hex()}"
    if isinstance(value.data, int):
        return f"{value.type} {value.data}"
    data = list(value.data) if isinstance(value.data, tuple) else value.data
    return f"{value.type} {json.dumps(data, ensure_ascii=False)}"


def render(op: Operation) -> str:
    """One line per operation, every parameter shown."""
    match op:
        case GetFacts():
            return "GetFacts"
        case ResolveAccount(account=a):
            return f"ResolveAccount {a}"
        case ReadValues(key=k, names=n):
            return f"ReadValues {k} [{', '.join(n)}]"
        case ListKey(key=k):
            return f"ListKey {k}"
        case SetValue(key=k, name=n, value=v):
            return f"SetValue {k} | {n} = {render_value(v)}"
        case DeleteValue(key=k, name=n):
            return f"DeleteValue {k} | {n}"
        case DeleteKey(key=k):
            return f"DeleteKey {k}"
        case GetGroup(sid=s):
            return f"GetGroup {s}"
        case AddGroupMember(sid=s, member=m):
            return f"AddGroupMember {s} {m}"
        case RemoveGroupMember(sid=s, member=m):
            return f"RemoveGroupMember {s} {m}"
        case GetFirewallRules(group=g):
            return f"GetFirewallRules {g}"
        case SetFirewallRule(group=g, rule=r, enabled=e):
            return f"SetFirewallRule {g} {r.describe()} = {e}"
        case RunScheduledTask(path=p, wait_seconds=w):
            return f"RunScheduledTask {p} (wait {w} s)"
        case GetRegistryPolicy():
            return "GetRegistryPolicy"
    raise AssertionError(op)


def session_transcript(host: FakeHost, playbook: Playbook) -> str:
    """What raorch sends to ``host``, pipeline by pipeline, as the engine does it."""
    pipeline1 = snapshot_reads(playbook)
    snap = build_snapshot(host.facts.computer_name, host.run(pipeline1))
    verdict = preflight(snap, playbook, ("corp.example.com",))
    lines = [f"# host {host.facts.computer_name}: {host.facts.caption}", "", "## pipeline 1"]
    lines += [render(op) for op in pipeline1]
    if verdict.refused or verdict.profile is None:
        lines += ["", "## refused", *(f"{r.kind}: {r.message}" for r in verdict.refusals)]
        return "\n".join(lines) + "\n"
    plan = make_plan(playbook, verdict.profile, snap)
    lines += ["", f"## profile {plan.profile}", "", "## changes"]
    lines += [c.describe() for c in plan.changes] or ["(none: compliant)"]
    if plan.changes:
        act = activation(plan.profile, plan.changes)
        pipeline2: Sequence[Operation] = (*plan.operations(), *plan.verify_reads(), *act)
        lines += ["", "## pipeline 2"] + [render(op) for op in pipeline2]
        results = host.run(pipeline2)
        assert all(r.ok for r in results), [r for r in results if not r.ok]
        read_back = results[len(plan.changes) : len(results) - len(act)]
        after = build_snapshot(snap.host, read_back, base=snap)
        assert compare(plan.desired, after) == ()
    return "\n".join(lines) + "\n"


def rollback_transcript(host: FakeHost, playbook: Playbook, original: Snapshot) -> str:
    """The rollback session's batches, as the engine sends them (HostMode.ROLLBACK)."""
    assert original.facts is not None
    profile = host_profile(original.facts)
    assert isinstance(profile, HostProfile)
    reads: Sequence[Operation] = (GetFacts(), *state_reads(playbook, profile))
    current = build_snapshot(original.host, host.run(reads))
    restore = restore_plan(original, current, changes_from_snapshot(playbook, original))
    assert not restore.conflicted
    lines = ["", "## rollback pipeline 1", *(render(op) for op in reads)]
    act = activation(profile, restore.changes)
    lines += [
        "",
        "## rollback pipeline 2 (the writes, then what makes them take effect)",
        *(render(op) for op in (*restore.operations(), *act)),
    ]
    results = host.run((*restore.operations(), *act))
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    return "\n".join(lines) + "\n"


def registry_of(host: FakeHost) -> dict[str, tuple[str, dict[str, RegValue]]]:
    return {k: (spelling, dict(v)) for k, (spelling, v) in host.registry.items()}


CASES: dict[str, tuple[Callable[[], FakeHost], Playbook]] = {
    "legacy-xp": (xp_host, PLAYBOOK),
    "legacy-server2003": (server2003_host, PLAYBOOK),
    "modern-w10": (w10_host, PLAYBOOK),
    "modern-w10-german": (w10_de_host, GERMAN_PLAYBOOK),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_batches(case: str) -> None:
    make_host, playbook = CASES[case]
    host = make_host()
    before = registry_of(host)
    original = make_host().snapshot(playbook)
    got = session_transcript(host, playbook)
    got += rollback_transcript(host, playbook, original)
    # the rollback leaves the registry exactly as before, keys included
    assert registry_of(host) == before
    path = GOLDEN / f"{case}.txt"
    if os.environ.get("RAORCH_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_second_session_is_pipeline_one_only(case: str) -> None:
    """After the writes of pipeline 2, the host is compliant: the next plan is empty."""
    make_host, playbook = CASES[case]
    host = make_host()
    session_transcript(host, playbook)
    assert host.writes > 0
    before = host.writes
    text = session_transcript(host, playbook)
    assert "(none: compliant)" in text
    assert "## pipeline 2" not in text
    assert host.writes == before
