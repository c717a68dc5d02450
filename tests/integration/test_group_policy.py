"""Group Policy awareness end to end, over real WinRM against the lab (docs/windows.md, section
15; docs/planning.md, "Group Policy"): the resultant set of policy is read in pipeline 1, and

- a GPO that sets the playbook's data: nothing to write for those values, "compliant through
  GPO"; a local change to such a value is drift that the GPO's next refresh writes back;
- a GPO that sets other data: the host is refused (domain_policy: refuse, the default), one
  session of one pipeline, nothing written; with ``report`` it is written and shown beside the
  changes; with ``ignore`` nothing is read;
- RSoP logging off: Group Policy is "unknown" (stale data in WMI is not read), the host is
  changed as before;
- a refresh after an apply: the GPO writes its data over raorch's, and ``raorch verify`` says
  "overridden by GPO <name>".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import PLAYBOOK_FILE, RAU_KEY, TS_KEY, LabClient, RaorchCli, lab_values

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.lab import LabHandle
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import DomainPolicy, Playbook
from raorch.planning.gpo import GpoRelation
from raorch.planning.plan import ValueChange
from raorch.planning.refusal import RefusalKind
from raorch.planning.rsop import RsopStatus

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]

MIX = "win10-gpo:1,win10-gpo-conflict:1,win10-rsop-off:1,win10-ent:1"
RA_GPO = "Remote Assistance (CORP)"
LOCKDOWN = "Helpdesk Lockdown"
ALLOW = f"{TS_KEY}\\fAllowUnsolicited"
FULL_CONTROL = f"{TS_KEY}\\fAllowUnsolicitedFullControl"


@pytest.fixture(scope="module")
def lab(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=4, mix=MIX, languages="en-US:1")


def host_of(lab: LabHandle, profile: str) -> str:
    return next(h for h in lab.hosts if lab.state(h)["profile"] == profile)


def playbook(policy: DomainPolicy = DomainPolicy.REFUSE) -> Playbook:
    return load_playbook(PLAYBOOK_FILE).model_copy(update={"domain_policy": policy})


def run(lab: LabHandle, host: str, mode: HostMode, book: Playbook | None = None) -> HostReport:
    inventory = load_inventory(lab.inventory_path)
    return run_host(
        inventory.targets[host], lab.password, book or playbook(), inventory.domains, mode
    )


def registry_part(lab: LabHandle, host: str) -> str:
    state = lab.state(host)
    return json.dumps({k: state[k] for k in ("registry", "groups", "firewall_rules")})


def ops_of_last_pipeline(lab: LabHandle, host: str) -> list[str]:
    [command] = lab.state(host)["runtime"]["log"][-1]["commands"]
    [(_name, operations)] = command["parameters"]
    return [str(op["Op"]) for op in operations]


def playbook_file(tmp_path: Path, policy: DomainPolicy) -> Path:
    data = yaml.safe_load(PLAYBOOK_FILE.read_text(encoding="utf-8"))
    data["domain_policy"] = policy.value
    path = tmp_path / f"playbook-{policy.value}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_gpo_with_the_playbooks_data_is_compliant_through_it(
    lab: LabHandle, lab_client: LabClient
) -> None:
    host = host_of(lab, "win10-gpo")
    plan = run(lab, host, HostMode.PLAN)
    assert plan.snapshot is not None and plan.snapshot.group_policy.status is RsopStatus.KNOWN
    # The policy values and the helpers list are the GPO's: only the firewall rules are raorch's.
    assert plan.outcome is Outcome.CHANGED, plan.reason
    assert not [c for c in plan.changes if isinstance(c, ValueChange)], plan.changes
    managed = {f.item: (f.relation, f.gpo) for f in plan.gpo}
    assert managed == {
        ALLOW: (GpoRelation.SAME, RA_GPO),
        FULL_CONTROL: (GpoRelation.SAME, RA_GPO),
        f"{RAU_KEY}\\CORP\\RA-Helpers": (GpoRelation.SAME, RA_GPO),
        f"{RAU_KEY}\\CORP\\jdoe": (GpoRelation.SAME, RA_GPO),
    }
    applied = run(lab, host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED, applied.reason
    verify = run(lab, host, HostMode.VERIFY)
    assert verify.outcome is Outcome.COMPLIANT, verify.differences

    # Someone sets "view only" locally: drift, which the GPO's next refresh repairs (a rollout
    # would write the same data now: the playbook's, which is the GPO's).
    local = {"Op": "SetValue", "Key": TS_KEY, "Name": "fAllowUnsolicitedFullControl"}
    local |= {"Type": "REG_DWORD", "Data": 0}
    assert all(o["Ok"] for o in lab_client.run_batch(lab, host, [local]).outputs)
    again = run(lab, host, HostMode.PLAN)
    assert [c.item for c in again.changes] == [FULL_CONTROL]
    assert (FULL_CONTROL, GpoRelation.SAME) in {(f.item, f.relation) for f in again.gpo}
    drift = run(lab, host, HostMode.VERIFY)
    assert drift.outcome is Outcome.DRIFTED
    [difference] = drift.differences
    assert difference.item == FULL_CONTROL and difference.found == "REG_DWORD 0"
    assert f'GPO "{RA_GPO}" sets the playbook\'s data' in difference.note
    refreshed = lab.gpupdate(host)
    assert refreshed["changed"] == [FULL_CONTROL]
    assert lab_values(lab.state(host), TS_KEY)["fAllowUnsolicitedFullControl"]["data"] == 1
    assert run(lab, host, HostMode.VERIFY).outcome is Outcome.COMPLIANT


def test_a_gpo_with_other_data_refuses_the_host(lab: LabHandle) -> None:
    host = host_of(lab, "win10-gpo-conflict")
    # `raorch lab state` shows the host's RSoP: the GPO and the value it sets.
    rsop = lab.state(host)["rsop"]
    assert list(rsop["gpos"].values()) == [LOCKDOWN]
    assert [(x["name"], x["data"], x["precedence"]) for x in rsop["settings"]] == [
        ("fAllowUnsolicited", 0, 1)
    ]
    before = registry_part(lab, host)
    pipelines = lab.state(host)["runtime"]["pipelines"]
    report = run(lab, host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED
    assert report.reason is not None and report.reason.stage is Stage.PREFLIGHT
    assert [r.kind for r in report.refusals] == [RefusalKind.GPO_CONFLICT]
    message = report.refusals[0].message
    assert f'{ALLOW}: GPO "{LOCKDOWN}" overrides it (it sets REG_DWORD 0' in message
    assert "the playbook wants REG_DWORD 1" in message and "domain_policy: report" in message
    # Nothing written, and the RSoP read cost no request: one pipeline, the reads only.
    assert registry_part(lab, host) == before
    assert lab.state(host)["runtime"]["pipelines"] == pipelines + 1
    assert ops_of_last_pipeline(lab, host)[-1] == "GetRegistryPolicy"

    # report: planned and shown beside the changes; ignore: not even read.
    reported = run(lab, host, HostMode.PLAN, playbook(DomainPolicy.REPORT))
    assert reported.outcome is Outcome.CHANGED
    assert any(isinstance(c, ValueChange) and c.item == ALLOW for c in reported.changes)
    [finding] = reported.gpo
    assert (finding.item, finding.relation, finding.gpo) == (ALLOW, GpoRelation.CONFLICT, LOCKDOWN)
    ignored = run(lab, host, HostMode.PLAN, playbook(DomainPolicy.IGNORE))
    assert ignored.outcome is Outcome.CHANGED and ignored.gpo == ()
    assert "GetRegistryPolicy" not in ops_of_last_pipeline(lab, host)
    assert registry_part(lab, host) == before


def test_with_rsop_logging_off_group_policy_is_unknown(lab: LabHandle) -> None:
    host = host_of(lab, "win10-rsop-off")
    report = run(lab, host, HostMode.PLAN)
    assert report.snapshot is not None
    policy = report.snapshot.group_policy
    assert policy.status is RsopStatus.LOGGING_OFF, policy
    assert "RSoP logging is turned off" in policy.describe()
    # What WMI still holds from before (a GPO turning Offer RA off) is not read: no refusal, no
    # finding, the host is planned as before.
    assert report.outcome is Outcome.CHANGED and report.gpo == ()
    assert any(isinstance(c, ValueChange) and c.item == ALLOW for c in report.changes)


def test_plan_cli_shows_the_gpo_managed_values_beside_the_changes(
    lab: LabHandle, raorch_cli: CliFactory
) -> None:
    cli = raorch_cli(lab)
    proc = cli.run("plan", "--inventory", str(lab.inventory_path), "--playbook", str(PLAYBOOK_FILE))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    gpo_host = host_of(lab, "win10-gpo")
    off = host_of(lab, "win10-rsop-off")
    text = proc.stdout
    assert f'    GPO: {ALLOW}: compliant through GPO "{RA_GPO}" (REG_DWORD 1)' in text
    assert "    Group Policy unknown: RSoP logging is turned off on this host" in text
    assert "gpo_conflict: " in text
    proc = cli.run(
        "plan", "--inventory", str(lab.inventory_path), "--playbook", str(PLAYBOOK_FILE), "--json"
    )
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert {g["relation"] for g in hosts[gpo_host]["gpo"]} == {"same"}
    assert hosts[off]["group_policy"]["status"] == "logging_off"


def test_a_refresh_after_apply_is_reported_as_overridden_by_the_gpo(
    lab: LabHandle, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    host = host_of(lab, "win10-gpo-conflict")
    applied = run(lab, host, HostMode.APPLY, playbook(DomainPolicy.REPORT))
    assert applied.outcome is Outcome.CHANGED, applied.reason
    assert lab_values(lab.state(host), TS_KEY)["fAllowUnsolicited"]["data"] == 1
    assert [f.relation for f in applied.gpo] == [GpoRelation.CONFLICT]

    refreshed = lab.gpupdate(host)
    assert refreshed["changed"] == [ALLOW]
    assert lab_values(lab.state(host), TS_KEY)["fAllowUnsolicited"]["data"] == 0

    cli = raorch_cli(lab)
    book = playbook_file(tmp_path, DomainPolicy.REPORT)
    common = ("--inventory", str(lab.inventory_path), "--playbook", str(book), "--limit", host)
    proc = cli.run("verify", *common, "--json")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    [found] = json.loads(proc.stdout)["hosts"]
    assert found["outcome"] == "drifted"
    [difference] = found["differences"]
    assert (difference["item"], difference["expected"], difference["found"]) == (
        ALLOW,
        "REG_DWORD 1",
        "REG_DWORD 0",
    )
    assert difference["note"] == f'overridden by GPO "{LOCKDOWN}" (it sets REG_DWORD 0)'
    text = cli.run("verify", *common).stdout
    assert (
        f"    {ALLOW}: expected REG_DWORD 1, found REG_DWORD 0 "
        f'(overridden by GPO "{LOCKDOWN}" (it sets REG_DWORD 0))'
    ) in text
    # The default playbook (refuse) would not write it again, but verify still reports the
    # drift and who causes it rather than refusing the host.
    default = run(lab, host, HostMode.VERIFY)
    assert default.outcome is Outcome.DRIFTED
    assert default.differences[0].note.startswith(f'overridden by GPO "{LOCKDOWN}"')
