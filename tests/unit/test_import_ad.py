"""`raorch inventory from-ad`, the pure part: DNs to OU groups, userAccountControl bits,
FILETIME and GeneralizedTime, what is left out, and the draft (loaded back by the writer)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from raorch.importers.ad import (
    AdOptions,
    Computer,
    Exclusion,
    build_draft,
    containers,
    domain_of,
    exclusion,
    filetime,
    generalized_time,
    group_names,
    split_dn,
    to_filetime,
)
from raorch.importers.ad_ldap import Bind, LdapOptions, _target
from raorch.importers.waves import parse_waves
from raorch.importers.writer import write_inventory
from raorch.models.errors import InputError
from raorch.models.inventory import AuthMethod

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BASE = "DC=corp,DC=example,DC=com"
# userAccountControl values as the directory holds them (learn.microsoft.com, "UserAccountControl
# property flags"), written out rather than taken from the code under test.
WORKSTATION = 0x1000  # WORKSTATION_TRUST_ACCOUNT: an enabled member computer
DISABLED = 0x1002  # ... with ACCOUNTDISABLE (0x2): 4098, as Samba shows a new computer
DC = 0x82000  # SERVER_TRUST_ACCOUNT | TRUSTED_FOR_DELEGATION: a writable DC, 532480
RODC = 0x5001000  # WORKSTATION_TRUST_ACCOUNT | PARTIAL_SECRETS_ACCOUNT | ...: a read-only DC


def test_filetime_as_the_attribute_page_defines_it() -> None:
    # 100-ns intervals since 1601-01-01 UTC (Last-Logon-Timestamp attribute): the Unix epoch
    # is 116444736000000000.
    assert filetime(116_444_736_000_000_000) == datetime.datetime(1970, 1, 1, tzinfo=UTC)
    assert filetime(0) is None and filetime(0x7FFF_FFFF_FFFF_FFFF) is None
    assert filetime(to_filetime(NOW)) == NOW


def test_generalized_time() -> None:
    assert generalized_time("20261130071214.0Z") == datetime.datetime(
        2026, 11, 30, 7, 12, 14, tzinfo=UTC
    )
    assert generalized_time("garbage") is None


def test_dn_parsing_with_escapes() -> None:
    assert split_dn(r"CN=WS\,01,OU=Floor 3,OU=R\2BD,DC=corp,DC=example") == [
        ("CN", "WS,01"),
        ("OU", "Floor 3"),
        ("OU", "R+D"),
        ("DC", "corp"),
        ("DC", "example"),
    ]
    assert split_dn(r"CN=caf\C3\A9,OU=x+L=y,DC=a") == [("CN", "café"), ("OU", "x"), ("DC", "a")]
    assert split_dn('CN="a,b",DC=a') == [("CN", "a,b"), ("DC", "a")]


def test_ous_become_groups_below_the_base() -> None:
    dn = f"CN=WS01,OU=Floor3,OU=Workstations,{BASE}"
    assert containers(dn, BASE) == ("Workstations", "Floor3")
    assert containers(dn, f"ou=workstations,{BASE.lower()}") == ("Floor3",)
    assert containers(f"CN=WS02,CN=Computers,{BASE}", BASE) == ("Computers",)
    assert group_names(("Workstations", "Floor3")) == ("Workstations", "Workstations/Floor3")
    assert domain_of(f"OU=Workstations,{BASE}") == "corp.example.com"


def computer(name: str, uac: int = WORKSTATION, **kw: object) -> Computer:
    values: dict[str, object] = {
        "dn": f"CN={name},OU=Floor3,OU=Workstations,{BASE}",
        "name": name,
        "dns_host_name": f"{name.lower()}.corp.example.com",
        "operating_system": "Windows 10 Enterprise",
        "os_version": "10.0 (19045)",
        "uac": uac,
        "last_logon": NOW - datetime.timedelta(days=3),
        "created": NOW - datetime.timedelta(days=400),
    }
    values.update(kw)
    return Computer(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (computer("A"), None),
        (computer("B", DISABLED), Exclusion.DISABLED),
        (computer("DC1", DC), Exclusion.DOMAIN_CONTROLLER),
        (computer("RODC", RODC), Exclusion.DOMAIN_CONTROLLER),
        (computer("OLD", last_logon=NOW - datetime.timedelta(days=91)), Exclusion.STALE),
        (computer("NEVER", last_logon=None), Exclusion.STALE),  # created 400 days ago
        (computer("NEW", last_logon=None, created=NOW - datetime.timedelta(days=2)), None),
        (computer("LNX", operating_system="Ubuntu"), Exclusion.NOT_WINDOWS),
        (computer("NODNS", dns_host_name=None), Exclusion.NO_DNS_NAME),
        (computer("BARE", operating_system=None, os_version=None), None),
    ],
)
def test_what_is_left_out(made: Computer, expected: Exclusion | None) -> None:
    assert exclusion(made, NOW, 90) is expected


def test_stale_days_off_keeps_old_computers() -> None:
    assert (
        exclusion(computer("OLD", last_logon=NOW - datetime.timedelta(days=900)), NOW, None) is None
    )


def fleet() -> list[Computer]:
    out = [computer(f"WS{i:02}") for i in range(1, 9)]
    out += [
        computer("SRV01", dn=f"CN=SRV01,OU=Servers,{BASE}", operating_system="Windows Server 2019"),
        computer("OFF", DISABLED),
        computer("OLD", last_logon=NOW - datetime.timedelta(days=120)),
        computer("DC1", DC, dn=f"CN=DC1,OU=Domain Controllers,{BASE}"),
    ]
    return out


def test_the_draft_counts_what_it_leaves_out(tmp_path: Path) -> None:
    result = build_draft(
        fleet(),
        BASE,
        "ldaps://dc1",
        AdOptions(user="CORP\\svc", waves=parse_waves("canary:1,pilot:2,broad")),
        NOW,
    )
    draft = result.draft
    assert [h.name for h in draft.hosts][:2] == ["SRV01", "WS01"]
    assert len(draft.hosts) == 9
    assert {g.name: len(g.hosts) for g in draft.groups} == {
        "Servers": 1,
        "Workstations": 8,
        "Workstations/Floor3": 8,
    }
    floor = next(g for g in draft.groups if g.name == "Workstations/Floor3")
    assert str(floor.origin) == f"OU=Floor3,OU=Workstations,{BASE}"
    assert draft.domains == ("corp.example.com",)
    summary = "\n".join(result.summary)
    assert "computers found: 12, imported: 9" in summary
    assert "left out: 1 disabled" in summary and "left out: 1 stale" in summary
    assert "left out: 1 domain controllers" in summary
    # Waves sample every OU: the canary and the pilot are not all from the first OU.
    canary, pilot, _ = draft.waves
    assert canary.hosts == ("SRV01",) and pilot.hosts == ("WS01", "WS02")
    ws01 = next(h for h in draft.hosts if h.name == "WS01")
    assert ws01.connection.auth is AuthMethod.KERBEROS and ws01.connection.port == 5986
    assert ws01.notes == ("Windows 10 Enterprise 10.0 (19045)", "last logon 2026-11-27")

    out = tmp_path / "inv.yaml"
    loaded = write_inventory(draft, out)
    assert loaded.targets["WS01"].address == "ws01.corp.example.com"
    text = out.read_text()
    assert f"  # CN=WS01,OU=Floor3,OU=Workstations,{BASE}; Windows 10 Enterprise 10.0" in text


def test_a_short_stale_threshold_is_warned_about() -> None:
    result = build_draft(fleet(), BASE, "s", AdOptions(user="CORP\\svc", stale_days=7), NOW)
    assert any("lastLogonTimestamp's update interval" in n.message for n in result.notices)


def test_no_account_is_an_error_before_the_directory_is_asked() -> None:
    with pytest.raises(InputError) as exc:
        AdOptions().check()
    assert "--user" in str(exc.value)
    AdOptions(auth=AuthMethod.CERTIFICATE).check()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (LdapOptions("http://dc1"), "not an LDAP address"),
        (LdapOptions("ldaps://dc1", start_tls=True), "TLS already"),
        (LdapOptions("ldaps://dc1", bind=Bind.SIMPLE), "needs an account"),
        (
            LdapOptions("ldap://dc1", bind=Bind.SIMPLE, user="u", password="p"),
            "clear text",
        ),
    ],
)
def test_bind_options_are_checked_before_connecting(options: LdapOptions, message: str) -> None:
    with pytest.raises(InputError) as exc:
        _target(options)
    assert message in str(exc.value)


def test_plain_simple_bind_only_when_asked_for() -> None:
    allowed = LdapOptions(
        "ldap://dc1", bind=Bind.SIMPLE, user="u", password="p", insecure_plain_ldap=True
    )
    assert _target(allowed).tls is False
    assert _target(LdapOptions("ldap://dc1:3268", start_tls=True)).port == 3268
