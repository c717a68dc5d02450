"""run_host against the lab over real WinRM (pypsrp -> HTTP(S) -> the emulated fleet).

Every outcome of a host, every pre-flight refusal the lab can produce, restore on a mid-apply
fault, idempotency, the exact documented values in the lab's host state, and one WinRM
session per host (the lab counts sessions and pipelines)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raorch.engine.host import HostMode, HostReport, run_host
from raorch.lab import LabHandle, running_lab
from raorch.models.inventory import ResolvedInventory, Target
from raorch.models.load import load_inventory
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import (
    AddHelpers,
    Firewall,
    LegacyFirewall,
    LocalAdministrators,
    ModernFirewall,
    OfferRemoteAssistance,
    Playbook,
    SolicitedPolicy,
)
from raorch.models.remote import RegType, RegValue, SetValue
from raorch.planning.refusal import RefusalKind
from raorch.planning.snapshot import Snapshot
from raorch.transport.session import HostSession

LabFactory = Callable[..., LabHandle]

TS = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
RAU = TS + "\\RAUnsolicit"
OLE = "HKLM\\SOFTWARE\\Microsoft\\Ole"
RA_MACHINE = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Remote Assistance"
FW = "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall"
ADMINS = "S-1-5-32-544"
RA_GROUP = "@FirewallAPI.dll,-33002"
INJECTION = "x'; Remove-Item C:\\ -Recurse; '"

SEED_PORTS = ("135:TCP:*:Enabled:Offer Remote Assistance",)
SEED_PROGRAMS = (
    "%WINDIR%\\SYSTEM32\\Sessmgr.exe:*:Enabled:Remote Assistance",
    "%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpsvc.exe:*:Enabled:Offer Remote Assistance",
    "%WINDIR%\\PCHealth\\HelpCtr\\Binaries\\Helpctr.exe:*:Enabled:"
    "Remote Assistance - Windows Messenger and Voice",
)
HELPERS = ("CORP\\RA-Helpers", "CORP\\jdoe")
PLAYBOOK = Playbook(
    name="it",
    offer_remote_assistance=OfferRemoteAssistance(helpers=HELPERS),
    firewall=Firewall(
        legacy=LegacyFirewall(ports=SEED_PORTS, programs=SEED_PROGRAMS),
        modern=ModernFirewall(),
    ),
)
# One host of each profile, in this order: lab-0001 xp-pro, lab-0002 server2003, ...
MIX = "xp-pro:1,server2003:1,win10-ent:1,xp-home:1,win10-home:1,win10-workgroup:1,win11-pro:1"
XP, S2003, W10, XP_HOME, W10_HOME, WORKGROUP, W11 = (f"lab-{i:04d}" for i in range(1, 8))


class Fleet:
    def __init__(self, handle: LabHandle) -> None:
        self.handle = handle
        self.inventory: ResolvedInventory = load_inventory(handle.inventory_path)

    def target(self, host: str) -> Target:
        return self.inventory.targets[host]

    def run(
        self, host: str, mode: HostMode, playbook: Playbook = PLAYBOOK, **kw: Any
    ) -> HostReport:
        domains = kw.pop("domains", self.inventory.domains)
        return run_host(self.target(host), self.handle.password, playbook, domains, mode, **kw)

    def state(self, host: str) -> dict[str, Any]:
        return self.handle.state(host)

    def counts(self, host: str) -> tuple[int, int]:
        runtime = self.state(host)["runtime"]
        return int(runtime["sessions"]), int(runtime["pipelines"])

    def write(self, host: str, key: str, name: str, value: RegValue) -> None:
        """Change a host behind raorch's back (a user, a GPO), through a real session."""
        with HostSession(self.target(host), self.handle.password) as s:
            [result] = s.run([SetValue(key, name, value)], Stage.APPLY)
            assert result.ok, result.error


def registry(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k.casefold(): v for k, v in state["registry"].items()}


def values(state: dict[str, Any], key: str) -> dict[str, Any]:
    return registry(state).get(key.casefold(), {})


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """What raorch may touch, in a form to compare before/after (every key, empty ones
    included: rollback deletes the keys raorch created)."""
    return {
        "registry": registry(state),
        "admins": sorted(m["sid"] for m in state["groups"][ADMINS]["members"]),
        "rules": {n: r["enabled"] for n, r in (state["firewall_rules"] or {}).items()},
    }


def sid_of(state: dict[str, Any], account: str, fleet: Fleet, host: str) -> str:
    with HostSession(fleet.target(host), fleet.handle.password) as s:
        from raorch.models.remote import ResolveAccount

        [result] = s.run([ResolveAccount(account)], Stage.PREFLIGHT)
    assert result.ok and isinstance(result.data, str)
    return result.data


@pytest.fixture(scope="module")
def fleet(lab_factory: LabFactory) -> Fleet:
    return Fleet(lab_factory(hosts=7, mix=MIX, languages="en-US:1"))


# ---------------------------------------------------------------- plan


def test_plan_reads_only_in_one_session_and_one_pipeline(fleet: Fleet) -> None:
    before_state = comparable(fleet.state(W11))
    sessions, pipelines = fleet.counts(W11)
    report = fleet.run(W11, HostMode.PLAN)
    assert report.outcome is Outcome.CHANGED, report.reason
    assert report.profile == "modern" and report.changes
    assert fleet.counts(W11) == (sessions + 1, pipelines + 1)
    assert comparable(fleet.state(W11)) == before_state


# ---------------------------------------------------------------- apply, per profile


def test_apply_legacy_xp_sets_exactly_the_documented_values(fleet: Fleet) -> None:
    sessions, pipelines = fleet.counts(XP)
    seen: list[Snapshot] = []
    report = fleet.run(XP, HostMode.APPLY, on_snapshot=seen.append)
    assert report.outcome is Outcome.CHANGED, report.reason
    assert fleet.counts(XP) == (sessions + 1, pipelines + 2)
    assert seen and Snapshot.from_json(seen[0].to_json()) == seen[0]

    state = fleet.state(XP)
    assert values(state, TS)["fAllowUnsolicited"] == {"type": "REG_DWORD", "data": 1}
    assert values(state, TS)["fAllowUnsolicitedFullControl"] == {"type": "REG_DWORD", "data": 1}
    assert values(state, RAU) == {h: {"type": "REG_SZ", "data": h} for h in HELPERS}
    assert values(state, OLE)["EnableDCOM"] == {"type": "REG_SZ", "data": "Y"}
    for profile in ("DomainProfile", "StandardProfile"):
        ports = f"{FW}\\{profile}\\GloballyOpenPorts"
        apps = f"{FW}\\{profile}\\AuthorizedApplications"
        assert values(state, ports)["Enabled"] == {"type": "REG_DWORD", "data": 1}
        assert values(state, apps)["Enabled"] == {"type": "REG_DWORD", "data": 1}
        assert values(state, ports + "\\List")["135:TCP"] == {
            "type": "REG_SZ",
            "data": SEED_PORTS[0],
        }
        app_list = values(state, apps + "\\List")
        for entry in SEED_PROGRAMS:
            path = entry.rsplit(":", 3)[0]
            assert app_list[path] == {"type": "REG_SZ", "data": entry}
    members = {m["sid"] for m in state["groups"][ADMINS]["members"]}
    for helper in HELPERS:
        assert sid_of(state, helper, fleet, XP) in members

    # a second apply writes nothing, in one pipeline
    before = comparable(fleet.state(XP))
    sessions, pipelines = fleet.counts(XP)
    again = fleet.run(XP, HostMode.APPLY)
    assert again.outcome is Outcome.UNCHANGED and again.changes == ()
    assert fleet.counts(XP) == (sessions + 1, pipelines + 1)
    assert comparable(fleet.state(XP)) == before
    assert fleet.run(XP, HostMode.VERIFY).outcome is Outcome.COMPLIANT


def test_apply_modern_enables_the_domain_rules_and_leaves_administrators(fleet: Fleet) -> None:
    admins_before = comparable(fleet.state(W10))["admins"]
    report = fleet.run(W10, HostMode.APPLY)
    assert report.outcome is Outcome.CHANGED, report.reason
    state = fleet.state(W10)
    assert values(state, RAU) == {h: {"type": "REG_SZ", "data": h} for h in HELPERS}
    assert values(state, TS)["fAllowUnsolicited"] == {"type": "REG_DWORD", "data": 1}
    for rule in state["firewall_rules"].values():
        if rule["group"] == RA_GROUP and rule["profile_mask"] & 1:
            assert rule["enabled"] is True
    assert comparable(state)["admins"] == admins_before  # add_helpers: legacy_only
    # no legacy firewall policy written on a modern host
    assert not any(k.startswith(FW.casefold()) and v for k, v in registry(state).items())


def test_apply_german_host_adds_helpers_to_administratoren_by_sid(
    lab_factory: LabFactory,
) -> None:
    german = Fleet(lab_factory(hosts=3, mix="win10-ent:1", languages="de-DE:1"))
    host = german.handle.hosts[0]
    assert german.state(host)["groups"][ADMINS]["name"] == "Administratoren"
    playbook = PLAYBOOK.model_copy(
        update={"local_administrators": LocalAdministrators(add_helpers=AddHelpers.ALL)}
    )
    report = german.run(host, HostMode.APPLY, playbook)
    assert report.outcome is Outcome.CHANGED, report.reason
    state = german.state(host)
    members = {m["sid"] for m in state["groups"][ADMINS]["members"]}
    for helper in HELPERS:
        assert sid_of(state, helper, german, host) in members
    assert german.run(host, HostMode.VERIFY, playbook).outcome is Outcome.COMPLIANT


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        (XP_HOME, RefusalKind.HOME_EDITION),
        (W10_HOME, RefusalKind.HOME_EDITION),
        (WORKGROUP, RefusalKind.NOT_DOMAIN_MEMBER),
    ],
)
def test_refused_hosts_are_skipped_with_nothing_written(
    fleet: Fleet, host: str, kind: RefusalKind
) -> None:
    before = comparable(fleet.state(host))
    sessions, pipelines = fleet.counts(host)
    report = fleet.run(host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED
    assert report.reason is not None and report.reason.stage is Stage.PREFLIGHT
    assert report.refusals[0].kind is kind
    assert fleet.counts(host) == (sessions + 1, pipelines + 1)
    assert comparable(fleet.state(host)) == before
    assert fleet.run(host, HostMode.VERIFY).outcome is Outcome.REFUSED


def test_domain_not_in_the_inventory(fleet: Fleet) -> None:
    report = fleet.run(W11, HostMode.PLAN, domains=("other.example.org",))
    assert [r.kind for r in report.refusals] == [RefusalKind.DOMAIN_NOT_ALLOWED]
    # the lab's hosts report the NetBIOS form CORP: matches a DNS entry's first label
    ok = fleet.run(W11, HostMode.PLAN, domains=("corp.example.com",))
    assert ok.refusals == ()


def test_unknown_helper_and_the_injection_string_arrive_literally(fleet: Fleet) -> None:
    # Windows forbids ; : \ in account names, so no directory holds this account: the host
    # must receive the literal string as a parameter and answer "not mapped".
    helper = f"CORP\\{INJECTION}"
    playbook = Playbook.model_construct(
        **{
            **PLAYBOOK.__dict__,
            "offer_remote_assistance": OfferRemoteAssistance.model_construct(
                **{**PLAYBOOK.offer_remote_assistance.__dict__, "helpers": (helper,)}
            ),
        }
    )
    report = fleet.run(W11, HostMode.PLAN, playbook)
    assert [r.kind for r in report.refusals] == [RefusalKind.HELPER_NOT_FOUND]
    assert (
        report.refusals[0].message == f"helper {helper} does not resolve to an account on this host"
    )
    log = json.dumps(fleet.state(W11)["runtime"]["log"][-1], ensure_ascii=False)
    assert json.dumps(helper, ensure_ascii=False)[1:-1] in log


def test_injection_string_in_a_firewall_entry_is_stored_literally(
    lab_factory: LabFactory,
) -> None:
    legacy = Fleet(lab_factory(hosts=3, mix="xp-pro:1", languages="en-US:1"))
    host = legacy.handle.hosts[0]
    entry = f"{INJECTION}:*:Enabled:Injected"
    playbook = PLAYBOOK.model_copy(
        update={"firewall": Firewall(legacy=LegacyFirewall(programs=(entry,)))}
    )
    report = legacy.run(host, HostMode.APPLY, playbook)
    assert report.outcome is Outcome.CHANGED, report.reason
    stored = values(legacy.state(host), f"{FW}\\DomainProfile\\AuthorizedApplications\\List")
    assert stored[INJECTION] == {"type": "REG_SZ", "data": entry}


def test_broken_trust_refuses_the_host(lab_factory: LabFactory) -> None:
    handle = lab_factory(
        hosts=3, mix="win10-ent:1", languages="en-US:1", faults={"broken_trusts": ["PARTNER"]}
    )
    fleet = Fleet(handle)
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(helpers=("PARTNER\\helpdesk",))}
    )
    report = fleet.run(handle.hosts[0], HostMode.APPLY, playbook)
    assert report.outcome is Outcome.SKIPPED
    assert [r.kind for r in report.refusals] == [RefusalKind.HELPER_TRUST_FAILURE]


def test_solicited_off_is_refused_when_required_and_fixed_when_enable(
    lab_factory: LabFactory,
) -> None:
    fleet = Fleet(lab_factory(hosts=3, mix="win10-ent:1", languages="en-US:2", seed=5))
    host = fleet.handle.hosts[0]
    fleet.write(host, RA_MACHINE, "fAllowToGetHelp", RegValue(RegType.DWORD, 0))
    report = fleet.run(host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED
    assert [r.kind for r in report.refusals] == [RefusalKind.SOLICITED_OFF]
    enable = PLAYBOOK.model_copy(update={"solicited_remote_assistance": SolicitedPolicy.ENABLE})
    fixed = fleet.run(host, HostMode.APPLY, enable)
    assert fixed.outcome is Outcome.CHANGED, fixed.reason
    assert values(fleet.state(host), TS)["fAllowToGetHelp"] == {"type": "REG_DWORD", "data": 1}


@pytest.fixture(scope="module")
def odd_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Hosts the lab's profiles do not offer (Windows 2000, PowerShell 1.0, a 32-bit
    PowerShell on 64-bit Windows), made by editing the lab's saved host states between two
    starts (the lab persists its hosts in its state directory)."""
    state_dir = tmp_path_factory.mktemp("odd-lab")
    with running_lab(hosts=3, mix="win10-ent:1", languages="en-US:1", state_dir=state_dir) as lab:
        fleet = Fleet(lab)
        for host in lab.hosts:  # make the lab save each host's state
            fleet.write(host, "HKLM\\SOFTWARE\\RaorchTest", "Touched", RegValue(RegType.SZ, "1"))
    edits = {
        "lab-0001": {"os_version": "5.0.2195", "edition": "Microsoft Windows 2000 Professional"},
        "lab-0002": {"ps_version": "1.0"},
        "lab-0003": {"wow64": True},
    }
    for host, facts in edits.items():
        path = Path(state_dir) / "hosts" / f"{host}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["facts"].update(facts)
        path.write_text(json.dumps(data), encoding="utf-8")
    with running_lab(
        hosts=3, mix="win10-ent:1", languages="en-US:1", state_dir=state_dir, fresh=False
    ) as lab:
        yield Fleet(lab)


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("lab-0001", RefusalKind.OS_TOO_OLD),
        ("lab-0002", RefusalKind.POWERSHELL_TOO_OLD),
        ("lab-0003", RefusalKind.WOW64),
    ],
)
def test_too_old_or_32_bit_hosts_are_refused(
    odd_fleet: Fleet, host: str, kind: RefusalKind
) -> None:
    report = odd_fleet.run(host, HostMode.APPLY)
    assert report.outcome is Outcome.SKIPPED
    assert report.refusals[0].kind is kind


# ---------------------------------------------------------------- failures, verify, rollback


def test_mid_apply_fault_restores_the_snapshot(lab_factory: LabFactory) -> None:
    handle = lab_factory(
        hosts=3,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"hosts": ["lab-0001"], "deny": [{"op": "SetFirewallRule"}]}]},
    )
    fleet = Fleet(handle)
    before = comparable(fleet.state("lab-0001"))
    sessions, pipelines = fleet.counts("lab-0001")
    report = fleet.run("lab-0001", HostMode.APPLY)
    assert report.outcome is Outcome.FAILED
    assert report.reason is not None and report.reason.stage is Stage.APPLY
    assert "AccessDenied" in report.reason.message and "restored" in report.reason.message
    assert report.restored  # the registry writes before the denied rule were undone
    # read, write, re-read, restore: one session, four pipelines
    assert fleet.counts("lab-0001") == (sessions + 1, pipelines + 4)
    assert comparable(fleet.state("lab-0001")) == before


def test_verify_drifted_then_rollback_conflict_then_forced(lab_factory: LabFactory) -> None:
    fleet = Fleet(lab_factory(hosts=3, mix="server2003:1", languages="en-US:1"))
    host = fleet.handle.hosts[0]
    before = comparable(fleet.state(host))
    applied = fleet.run(host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED and applied.snapshot is not None
    original = Snapshot.from_json(applied.snapshot.to_json())  # as the journal stores it

    fleet.write(host, TS, "fAllowUnsolicitedFullControl", RegValue(RegType.DWORD, 0))
    drifted = fleet.run(host, HostMode.VERIFY)
    assert drifted.outcome is Outcome.DRIFTED
    assert [(d.expected, d.found) for d in drifted.differences] == [("REG_DWORD 1", "REG_DWORD 0")]

    conflict = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original)
    assert conflict.outcome is Outcome.CONFLICT and conflict.differences
    forced = fleet.run(host, HostMode.ROLLBACK, original_snapshot=original, force=True)
    assert forced.outcome is Outcome.ROLLED_BACK, forced.reason
    assert comparable(fleet.state(host)) == before


def test_rollback_restores_exactly_and_twice_is_a_no_op(lab_factory: LabFactory) -> None:
    fleet = Fleet(lab_factory(hosts=3, mix="xp-pro:1", languages="en-US:1", seed=3))
    host = fleet.handle.hosts[0]
    before = comparable(fleet.state(host))
    applied = fleet.run(host, HostMode.APPLY)
    assert applied.outcome is Outcome.CHANGED and applied.snapshot is not None
    report = fleet.run(
        host, HostMode.ROLLBACK, original_snapshot=applied.snapshot, applied=applied.changes
    )
    assert report.outcome is Outcome.ROLLED_BACK, report.reason
    assert comparable(fleet.state(host)) == before
    sessions, pipelines = fleet.counts(host)
    again = fleet.run(host, HostMode.ROLLBACK, original_snapshot=applied.snapshot)
    assert again.outcome is Outcome.ROLLED_BACK and again.changes == ()
    assert fleet.counts(host) == (sessions + 1, pipelines + 1)


@pytest.mark.parametrize(
    ("fault", "stage"),
    [({"unreachable": True}, Stage.CONNECT), ({"auth_refused": True}, Stage.AUTH)],
)
def test_unreachable_hosts(lab_factory: LabFactory, fault: dict[str, Any], stage: Stage) -> None:
    handle = lab_factory(
        hosts=3,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"hosts": ["lab-0002"], **fault}]},
    )
    fleet = Fleet(handle)
    verify = fleet.run("lab-0002", HostMode.VERIFY)
    assert verify.outcome is Outcome.UNREACHABLE
    assert verify.reason is not None and verify.reason.stage is stage
    apply = fleet.run("lab-0002", HostMode.APPLY)
    assert apply.outcome is Outcome.FAILED
    assert apply.reason is not None and apply.reason.stage is stage


# ---------------------------------------------------------------- raorch plan


def test_raorch_plan_over_a_mixed_fleet(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from raorch.cli.main import main

    monkeypatch.setenv("RAORCH_LAB_PASSWORD", fleet.handle.password)
    before = {h: comparable(fleet.state(h)) for h in fleet.handle.hosts}
    inventory = str(fleet.handle.inventory_path)
    result = CliRunner().invoke(
        main, ["plan", "--inventory", inventory, "--playbook", _playbook_file(), "--json"]
    )
    document = json.loads(result.output)
    by_host = {h["host"]: h for h in document["hosts"]}
    assert by_host[XP_HOME]["outcome"] == "skipped"
    assert [r["kind"] for r in by_host[W10_HOME]["refusals"]] == ["home_edition"]
    assert by_host[WORKGROUP]["refusals"][0]["kind"] == "not_domain_member"
    assert by_host[S2003]["profile"] == "legacy" and by_host[S2003]["outcome"] == "changed"
    kinds = {c["kind"] for c in by_host[S2003]["changes"]}
    assert kinds == {"value", "member"}
    assert {c["kind"] for c in by_host[W11]["changes"]} == {"value", "rule"}
    assert result.exit_code == 4  # ExitCode.CHANGES_PENDING
    assert {h: comparable(fleet.state(h)) for h in fleet.handle.hosts} == before  # read-only

    limited = CliRunner().invoke(
        main,
        [
            "plan",
            "--inventory",
            inventory,
            "--playbook",
            _playbook_file(),
            "--limit",
            "LAB-0004,lab-0005",
        ],
    )
    assert limited.exit_code == 0, limited.output  # both refused: nothing would change
    assert "lab-0004" in limited.output and "lab-0001" not in limited.output
    assert "2 host(s): 0 would change, 0 compliant, 2 refused, 0 failed" in limited.output


def _playbook_file() -> str:
    import tempfile

    import yaml

    data = {
        "name": "it",
        "offer_remote_assistance": {"helpers": list(HELPERS)},
        "firewall": {
            "legacy": {"ports": list(SEED_PORTS), "programs": list(SEED_PROGRAMS)},
            "modern": {},
        },
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return f.name
