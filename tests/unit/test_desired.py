"""What each playbook field becomes, per profile (docs/windows.md)."""

from __future__ import annotations

import pytest
from test_plan_fixtures import (
    DCOM_IN,
    PLAYBOOK,
    PNRP_IN_ACTIVE,
    PNRP_IN_PUBLIC,
    RASERVER_IN,
    RAU,
    TCP_IN_ACTIVE,
    TCP_IN_PUBLIC,
    TS,
    dw,
    server2003_host,
    sz,
    w10_host,
    xp_host,
)

from raorch.models.playbook import (
    AddHelpers,
    DcomPolicy,
    Firewall,
    LegacyFirewall,
    LocalAdministrators,
    ModernFirewall,
    ModernProfile,
    OfferRemoteAssistance,
    OfferState,
    Permission,
    SolicitedPolicy,
)
from raorch.models.remote import FirewallProfile, RuleIdentity, SetFirewallRule
from raorch.planning.desired import (
    DesiredList,
    DesiredMember,
    DesiredRule,
    DesiredValue,
    desired_state,
)
from raorch.planning.plan import RuleChange, ValueChange, make_plan
from raorch.planning.profile import HostProfile


def test_enabled_view_only() -> None:
    playbook = PLAYBOOK.model_copy(
        update={
            "offer_remote_assistance": OfferRemoteAssistance(
                permission=Permission.VIEW, helpers=("CORP\\jdoe",)
            ),
            "dcom": DcomPolicy.IGNORE,
        }
    )
    items = desired_state(playbook, HostProfile.MODERN, w10_host().snapshot(playbook)).items
    assert DesiredValue(TS, "fAllowUnsolicited", dw(1)) in items
    assert DesiredValue(TS, "fAllowUnsolicitedFullControl", dw(0)) in items
    # the list is exact: values not in the playbook are removed
    assert DesiredList(RAU, {"CORP\\jdoe": sz("CORP\\jdoe")}, exact=True) in items
    assert not any(isinstance(i, DesiredValue) and i.name == "EnableDCOM" for i in items)


def test_disabled_deletes_helpers_and_full_control() -> None:
    playbook = PLAYBOOK.model_copy(
        update={"offer_remote_assistance": OfferRemoteAssistance(state=OfferState.DISABLED)}
    )
    host = xp_host()
    host.set(TS, "fAllowUnsolicited", dw(1))
    host.set(TS, "fAllowUnsolicitedFullControl", dw(1))
    plan = make_plan(playbook, HostProfile.LEGACY, host.snapshot(playbook))
    values = [c for c in plan.changes if isinstance(c, ValueChange) and c.key.startswith(TS)]
    assert values[:3] == [
        ValueChange(TS, "fAllowUnsolicited", dw(1), dw(0)),
        ValueChange(TS, "fAllowUnsolicitedFullControl", dw(1), None),
        ValueChange(RAU, "CORP\\olduser", sz("CORP\\olduser"), None),
    ]
    assert not any(isinstance(i, DesiredMember) for i in plan.desired.items)


@pytest.mark.parametrize(
    ("add", "profile", "members"),
    [
        (AddHelpers.LEGACY_ONLY, HostProfile.LEGACY, 2),
        (AddHelpers.LEGACY_ONLY, HostProfile.MODERN, 0),
        (AddHelpers.ALL, HostProfile.MODERN, 2),
        (AddHelpers.NEVER, HostProfile.LEGACY, 0),
    ],
)
def test_administrators_per_add_helpers(
    add: AddHelpers, profile: HostProfile, members: int
) -> None:
    playbook = PLAYBOOK.model_copy(
        update={"local_administrators": LocalAdministrators(add_helpers=add)}
    )
    items = desired_state(playbook, profile, xp_host().snapshot(playbook)).items
    found = [i for i in items if isinstance(i, DesiredMember)]
    assert len(found) == members
    assert all(m.group_sid == "S-1-5-32-544" and m.sid.startswith("S-1-5-21-") for m in found)


def test_legacy_firewall_only_on_legacy_and_additive() -> None:
    host = xp_host()
    legacy_items = desired_state(PLAYBOOK, HostProfile.LEGACY, host.snapshot()).items
    lists = [i for i in legacy_items if isinstance(i, DesiredList) and "WindowsFirewall" in i.key]
    assert len(lists) == 4 and not any(lst.exact for lst in lists)
    modern_items = desired_state(PLAYBOOK, HostProfile.MODERN, w10_host().snapshot()).items
    assert not any("WindowsFirewall" in getattr(i, "key", "") for i in modern_items)
    # the other entry of the list (3389:TCP) stays
    plan = make_plan(PLAYBOOK, HostProfile.LEGACY, host.snapshot())
    assert not any(isinstance(c, ValueChange) and c.name == "3389:TCP" for c in plan.changes)


def test_modern_rules_by_profile_intersection() -> None:
    def enabled_rules(profiles: tuple[ModernProfile, ...]) -> set[RuleIdentity]:
        playbook = PLAYBOOK.model_copy(
            update={"firewall": Firewall(modern=ModernFirewall(profiles=profiles))}
        )
        items = desired_state(playbook, HostProfile.MODERN, w10_host().snapshot(playbook)).items
        return {i.rule for i in items if isinstance(i, DesiredRule) and i.enabled}

    # Twins share a display name: only the one whose profiles intersect the playbook's.
    domain = {DCOM_IN, RASERVER_IN, TCP_IN_ACTIVE, PNRP_IN_ACTIVE}
    assert enabled_rules((ModernProfile.DOMAIN,)) == domain
    assert enabled_rules((ModernProfile.PRIVATE,)) == {TCP_IN_ACTIVE, PNRP_IN_ACTIVE}
    assert enabled_rules((ModernProfile.PUBLIC,)) == {TCP_IN_PUBLIC, PNRP_IN_PUBLIC}
    assert len(enabled_rules(tuple(ModernProfile))) == 6


def test_only_the_intersecting_twin_is_changed() -> None:
    # "Remote Assistance (TCP-In)" twice: the Public rule and its Domain + Private twin, both
    # off. A Domain playbook enables the twin and writes nothing to the Public rule.
    plan = make_plan(PLAYBOOK, HostProfile.MODERN, w10_host().snapshot())
    rules = [c for c in plan.changes if isinstance(c, RuleChange)]
    assert [c.rule for c in rules] == [DCOM_IN, RASERVER_IN, TCP_IN_ACTIVE]
    ops = [op for op in plan.operations() if isinstance(op, SetFirewallRule)]
    assert [op.rule for op in ops] == [DCOM_IN, RASERVER_IN, TCP_IN_ACTIVE]
    assert not any(op.rule.profiles == FirewallProfile.PUBLIC for op in ops)


def test_legacy_host_gets_no_rule_writes() -> None:
    plan = make_plan(PLAYBOOK, HostProfile.LEGACY, server2003_host().snapshot())
    assert not any(isinstance(i, DesiredRule) for i in plan.desired.items)


def test_empty_sections_are_left_alone() -> None:
    playbook = PLAYBOOK.model_copy(
        update={"firewall": Firewall(legacy=LegacyFirewall(ports=("135:TCP:*:Enabled:RA",)))}
    )
    items = desired_state(playbook, HostProfile.LEGACY, xp_host().snapshot(playbook)).items
    assert not any("AuthorizedApplications" in getattr(i, "key", "") for i in items)


def test_solicited_enable_writes_fallowtogethelp_alone_and_records_the_companions() -> None:
    """RA_Solicit's companion values (fAllowFullControl, MaxTicketExpiry(+Units), fUseMailto)
    are left as the host has them: on XP each missing one falls back to the Control Panel value
    (docs/windows.md, section 2). They are read, so the snapshot records them for rollback."""
    playbook = PLAYBOOK.model_copy(update={"solicited_remote_assistance": SolicitedPolicy.ENABLE})
    host = xp_host()
    host.set(TS, "fAllowToGetHelp", dw(0))
    host.set(TS, "fAllowFullControl", dw(0))
    host.set(TS, "MaxTicketExpiry", dw(4))
    host.set(TS, "MaxTicketExpiryUnits", dw(1))
    snap = host.snapshot(playbook)
    for name in ("fAllowFullControl", "MaxTicketExpiry", "MaxTicketExpiryUnits", "fUseMailto"):
        snap.value(TS, name)  # recorded (NotRecordedError otherwise); fUseMailto: absent
    assert snap.value(TS, "fUseMailto") is None
    plan = make_plan(playbook, HostProfile.LEGACY, snap)
    solicited = [
        c
        for c in plan.changes
        if isinstance(c, ValueChange) and c.key == TS and "Unsolicited" not in c.name
    ]
    assert solicited == [ValueChange(TS, "fAllowToGetHelp", dw(0), dw(1))]
