"""Pre-flight: each refusal on its own, with its kind and a message an administrator reads."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_plan_fixtures import (
    PLAYBOOK,
    RA_MACHINE,
    TS,
    W10,
    XP,
    FakeHost,
    dw,
    modern_rules,
    w10_host,
    xp_host,
)

from raorch.models.playbook import (
    AddHelpers,
    Firewall,
    LocalAdministrators,
    OfferRemoteAssistance,
    OfferState,
    Playbook,
    SolicitedPolicy,
)
from raorch.models.remote import ErrorKind, RegType, RegValue
from raorch.planning.preflight import domain_allowed, preflight
from raorch.planning.profile import HostProfile
from raorch.planning.refusal import RefusalKind

DOMAINS = ("corp.example.com",)


def kinds(
    host: FakeHost, playbook: Playbook = PLAYBOOK, domains: tuple[str, ...] = DOMAINS
) -> list[RefusalKind]:
    return [r.kind for r in preflight(host.snapshot(playbook), playbook, domains).refusals]


def test_eligible_hosts_pass_with_their_profile() -> None:
    for host, profile in ((xp_host(), HostProfile.LEGACY), (w10_host(), HostProfile.MODERN)):
        verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
        assert verdict.refusals == ()
        assert verdict.profile is profile


@pytest.mark.parametrize(
    ("caption", "sku"),
    [
        ("Microsoft Windows XP Home Edition", 0),
        ("Microsoft Windows 10 Home", 101),
        ("Microsoft Windows 7 Home Premium ", 3),
        ("Microsoft Windows 7 Starter ", 11),  # Starter by SKU
        ("Microsoft Windows 10 Home Single Language", 100),
    ],
)
def test_home_editions_are_refused(caption: str, sku: int) -> None:
    host = w10_host()
    host.facts = replace(host.facts, caption=caption, sku=sku)
    verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
    assert verdict.first is not None
    assert verdict.first.kind is RefusalKind.HOME_EDITION
    assert "Home edition" in verdict.first.message
    assert verdict.refused and verdict.profile is HostProfile.MODERN


def test_homegroup_word_inside_another_word_is_not_home() -> None:
    host = w10_host()
    host.facts = replace(host.facts, caption="Microsoft Windows 10 Enterprise (Homestead build)")
    assert kinds(host) == []


def test_workgroup_host_is_refused() -> None:
    host = w10_host()
    host.facts = replace(host.facts, part_of_domain=False, domain="WORKGROUP")
    assert kinds(host) == [RefusalKind.NOT_DOMAIN_MEMBER]


def test_foreign_domain_is_refused() -> None:
    host = w10_host()
    host.facts = replace(host.facts, domain="OTHER")
    refusal = preflight(host.snapshot(), PLAYBOOK, DOMAINS).first
    assert refusal is not None and refusal.kind is RefusalKind.DOMAIN_NOT_ALLOWED
    assert "OTHER" in refusal.message and "corp.example.com" in refusal.message


@pytest.mark.parametrize(
    ("host_domain", "allowed", "ok"),
    [
        ("corp.example.com", ["CORP.EXAMPLE.COM"], True),
        ("CORP", ["corp.example.com"], True),  # NetBIOS host, DNS inventory
        ("corp.example.com", ["corp"], True),  # DNS host, NetBIOS inventory
        ("corp.example.com.", ["corp.example.com"], True),
        ("corp.other.org", ["corp.example.com"], False),  # first labels alone never match
        ("CORPX", ["corp.example.com"], False),
        ("", ["corp.example.com"], False),
        ("CORP", [], False),
    ],
)
def test_domain_matching(host_domain: str, allowed: list[str], ok: bool) -> None:
    assert domain_allowed(host_domain, allowed) is ok


def test_unknown_helper_is_refused_by_name() -> None:
    host = w10_host()
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(helpers=("CORP\\x",))}
    )
    refusal = preflight(host.snapshot(playbook), playbook, DOMAINS).first
    assert refusal is not None and refusal.kind is RefusalKind.HELPER_NOT_FOUND
    assert refusal.message == "helper CORP\\x does not resolve to an account on this host"


def test_broken_trust_is_refused() -> None:
    host = w10_host()
    host.accounts["partner\\helpdesk"] = ErrorKind.TRUST_FAILURE
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(helpers=("PARTNER\\helpdesk",))}
    )
    assert kinds(host, playbook) == [RefusalKind.HELPER_TRUST_FAILURE]


def test_disabled_playbook_does_not_resolve_helpers() -> None:
    host = w10_host()
    playbook = PLAYBOOK.model_copy(
        update={
            "offer_remote_assistance": OfferRemoteAssistance(
                state=OfferState.DISABLED, helpers=("CORP\\nobody",)
            )
        }
    )
    assert kinds(host, playbook) == []


@pytest.mark.parametrize(
    ("policy", "machine", "off"),
    [
        (0, None, True),
        (None, 0, True),
        (1, 0, False),  # the policy wins over the machine setting
        (None, 1, False),
        (None, None, False),  # absent everywhere: Windows' default, not "off"
    ],
)
def test_solicited_off_is_refused_only_when_required(
    policy: int | None, machine: int | None, off: bool
) -> None:
    host = w10_host()
    host.delete(RA_MACHINE, "fAllowToGetHelp")
    if policy is not None:
        host.set(TS, "fAllowToGetHelp", dw(policy))
    if machine is not None:
        host.set(RA_MACHINE, "fAllowToGetHelp", dw(machine))
    assert kinds(host) == ([RefusalKind.SOLICITED_OFF] if off else [])
    enable = PLAYBOOK.model_copy(update={"solicited_remote_assistance": SolicitedPolicy.ENABLE})
    assert kinds(host, enable) == []


@pytest.mark.parametrize(
    ("version", "ps", "kind"),
    [
        ("5.0.2195", "2.0", RefusalKind.OS_TOO_OLD),  # Windows 2000
        ("garbage", "2.0", RefusalKind.OS_UNKNOWN),
        ("5.1.2600", "1.0", RefusalKind.POWERSHELL_TOO_OLD),
        ("5.1.2600", "", RefusalKind.POWERSHELL_TOO_OLD),
    ],
)
def test_too_old_or_unknown(version: str, ps: str, kind: RefusalKind) -> None:
    host = xp_host()
    host.facts = replace(XP, os_version=version, ps_version=ps)
    assert kinds(host) == [kind]


def test_wow64_is_refused() -> None:
    host = w10_host()
    host.facts = replace(W10, wow64=True)
    refusal = preflight(host.snapshot(), PLAYBOOK, DOMAINS).first
    assert refusal is not None and refusal.kind is RefusalKind.WOW64
    assert "WOW6432Node" in refusal.message


def test_modern_host_without_the_rule_group_is_refused() -> None:
    host = FakeHost(W10, rules=None)
    assert kinds(host) == [RefusalKind.FIREWALL_GROUP_MISSING]
    host.rules = modern_rules()
    assert kinds(host) == []


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (1, ("LocalPolicyModifyState is 1", "GP_OVERRIDE", "domain GPO", "firewall.modern")),
        (2, ("LocalPolicyModifyState is 2", "INBOUND_BLOCKED", "inbound", "firewall.modern")),
        (7, ("LocalPolicyModifyState is 7", "firewall.modern")),
    ],
)
def test_host_whose_firewall_ignores_local_rules_is_refused(
    state: int, words: tuple[str, ...]
) -> None:
    # A domain GPO that does not merge local rules (or blocks all inbound): raorch would
    # write, verify would read the writes back, and nothing would be open.
    host = w10_host()
    host.modify_state = state
    verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
    assert [r.kind for r in verdict.refusals] == [RefusalKind.FIREWALL_LOCAL_RULES_IGNORED]
    assert verdict.first is not None
    for word in words:
        assert word in verdict.first.message, (word, verdict.first.message)


def test_local_policy_modify_state_only_matters_for_the_modern_firewall() -> None:
    host = w10_host()
    for ok in (0, None):  # None: Vista, whose INetFwPolicy2 has no such property
        host.modify_state = ok
        assert kinds(host) == []
    host.modify_state = 1
    no_modern = PLAYBOOK.model_copy(update={"firewall": Firewall(legacy=PLAYBOOK.firewall.legacy)})
    assert kinds(host, no_modern) == []
    assert kinds(host) == [RefusalKind.FIREWALL_LOCAL_RULES_IGNORED]


def test_every_refusal_is_reported_first_the_most_fundamental() -> None:
    host = w10_host()
    host.facts = replace(W10, caption="Microsoft Windows 10 Home", sku=101, part_of_domain=False)
    verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
    assert [r.kind for r in verdict.refusals] == [
        RefusalKind.HOME_EDITION,
        RefusalKind.NOT_DOMAIN_MEMBER,
    ]
    assert verdict.first is not None
    assert verdict.first.reason().stage.value == "preflight"


def test_administrators_group_missing_only_matters_when_helpers_are_added() -> None:
    host = xp_host()
    snap = host.snapshot()
    snap = replace(snap, administrators=None)
    assert [r.kind for r in preflight(snap, PLAYBOOK, DOMAINS).refusals] == [
        RefusalKind.ADMINISTRATORS_GROUP_MISSING
    ]
    never = PLAYBOOK.model_copy(
        update={"local_administrators": LocalAdministrators(add_helpers=AddHelpers.NEVER)}
    )
    assert preflight(snap, never, DOMAINS).refusals == ()


# ---------------------------------------------------------------- domain controllers, services


@pytest.mark.parametrize("role", [4, 5])
def test_domain_controllers_are_refused(role: int) -> None:
    # On a DC, WinNT://<DC>/Administrators is the domain's BUILTIN\Administrators: helpers added
    # there would administer every DC (docs/windows.md, section 9).
    for host in (xp_host(), w10_host()):
        host.facts = replace(host.facts, domain_role=role)
        verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
        assert [r.kind for r in verdict.refusals] == [RefusalKind.DOMAIN_CONTROLLER]
        assert verdict.first is not None
        assert f"DomainRole {role}" in verdict.first.message
        assert "BUILTIN\\Administrators" in verdict.first.message


@pytest.mark.parametrize("role", [0, 1, 2, 3, None])
def test_members_and_unknown_roles_are_not_refused_as_dcs(role: int | None) -> None:
    host = w10_host()
    host.facts = replace(host.facts, domain_role=role)
    assert RefusalKind.DOMAIN_CONTROLLER not in kinds(host)


def test_domain_controller_is_refused_even_when_offers_are_turned_off() -> None:
    host = w10_host()
    host.facts = replace(host.facts, domain_role=5)
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(state=OfferState.DISABLED)}
    )
    assert kinds(host, playbook) == [RefusalKind.DOMAIN_CONTROLLER]


def test_modern_host_without_raserver_is_refused() -> None:
    host = w10_host()
    host.facts = replace(host.facts, ra_server=False)
    verdict = preflight(host.snapshot(), PLAYBOOK, DOMAINS)
    assert [r.kind for r in verdict.refusals] == [RefusalKind.RA_NOT_INSTALLED]
    assert verdict.first is not None and "Remote-Assistance" in verdict.first.message
    # Unknown (an older snapshot) and present refuse nothing; nor does turning offers off.
    for ra_server in (None, True):
        host.facts = replace(host.facts, ra_server=ra_server)
        assert kinds(host) == []
    host.facts = replace(host.facts, ra_server=False)
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(state=OfferState.DISABLED)}
    )
    assert kinds(host, playbook) == []


def test_legacy_host_has_no_raserver_and_is_not_refused_for_it() -> None:
    host = xp_host()
    host.facts = replace(host.facts, ra_server=False)
    assert kinds(host) == []


@pytest.mark.parametrize(
    ("helpsvc", "termservice", "refused"),
    [
        ("Auto", "Manual", []),
        ("Manual", "Auto", []),
        ("Disabled", "Manual", ["helpsvc service is disabled"]),
        ("Auto", "disabled", ["TermService service is disabled"]),
        ("", "Manual", ["helpsvc service does not exist"]),
        (
            "Disabled",
            "Disabled",
            ["helpsvc service is disabled", "TermService service is disabled"],
        ),
        (None, None, []),  # not read: a snapshot of an older raorch
    ],
)
def test_legacy_services_must_not_be_disabled(
    helpsvc: str | None, termservice: str | None, refused: list[str]
) -> None:
    host = xp_host()
    host.facts = replace(host.facts, helpsvc_start_mode=helpsvc, termservice_start_mode=termservice)
    refusals = preflight(host.snapshot(), PLAYBOOK, DOMAINS).refusals
    assert all(r.kind is RefusalKind.SERVICE_DISABLED for r in refusals)
    assert len(refusals) == len(refused)
    for refusal, words in zip(refusals, refused, strict=True):
        assert words in refusal.message and "sc config" in refusal.message


def test_modern_hosts_do_not_need_helpsvc() -> None:
    host = w10_host()
    host.facts = replace(host.facts, helpsvc_start_mode="", termservice_start_mode="Disabled")
    assert kinds(host) == []


def test_unsolicited_access_new_dacl_refuses_a_legacy_host_only() -> None:
    """helpsvc takes UnsolicitedAccessNewDACL and never reads RAUnsolicit (docs/windows.md,
    section 12): on XP / 2003 the helpers list would have no effect, so the host is refused."""
    sddl = "O:BAG:BAD:(A;;0x101fffff;;;S-1-5-21-7-7-7-1234)"
    xp = xp_host()
    xp.set(TS, "UnsolicitedAccessNewDACL", RegValue(RegType.SZ, sddl))
    verdict = preflight(xp.snapshot(), PLAYBOOK, DOMAINS)
    assert [r.kind for r in verdict.refusals] == [RefusalKind.HELPERS_LIST_OVERRIDDEN]
    assert "UnsolicitedAccessNewDACL" in verdict.refusals[0].message
    # disabling offers needs no helpers list: helpsvc denies before it reads any access list
    disabled = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(state=OfferState.DISABLED)}
    )
    assert kinds(xp, disabled) == []
    # no public source says RAServer (Vista+) reads the value: a modern host is not refused
    w10 = w10_host()
    w10.set(TS, "UnsolicitedAccessNewDACL", RegValue(RegType.SZ, sddl))
    assert kinds(w10) == []
