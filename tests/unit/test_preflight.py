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
