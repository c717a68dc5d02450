"""The real `raorch inventory from-ad` against the lab's real Samba AD DC: computer objects
created in the test (OUs, one disabled, one stale by its lastLogonTimestamp, one without
dNSHostName), read with a Kerberos bind (sealed, over plain LDAP, paged) and with a simple bind
over LDAPS and StartTLS; then the real `raorch validate` on the inventory it wrote; and every
failure (bad password, no ticket, unreachable, bad base DN, plain LDAP) through the command
line, never showing the password."""

from __future__ import annotations

import datetime
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PLAYBOOK_FILE, unique_name

from raorch.importers.ad import to_filetime
from raorch.lab.samba import DC_HOST_NAME, SambaDC

ldap3 = pytest.importorskip("ldap3")

PASSWORD_ENV = "RAORCH_TEST_BIND_PASSWORD"


@dataclass(frozen=True)
class Fleet:
    dc: SambaDC
    top: str  # the test's own OU: the search base
    names: dict[str, str]  # role -> computer name
    dc_name: str  # dc1.corp.raorch.test
    ca: Path  # the DC's TLS CA (Samba's self-made one)


def admin_connection(dc: SambaDC, dc_name: str, ca: Path) -> object:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca), valid_names=[dc_name])
    server = ldap3.Server("127.0.0.1", port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    return ldap3.Connection(
        server, user=f"Administrator@{dc.realm}", password=dc.admin_password, auto_bind=True
    )


@pytest.fixture(scope="module")
def fleet(samba_dc: SambaDC) -> Iterator[Fleet]:
    dc_name = f"{DC_HOST_NAME}.{samba_dc.realm.lower()}"
    ca = samba_dc.directory / "private" / "tls" / "ca.pem"
    top = f"OU={unique_name('imp')},{samba_dc.base_dn}"
    admin = admin_connection(samba_dc, dc_name, ca)
    ous = {
        "top": top,
        "ws": f"OU=Workstations,{top}",
        "floor": f"OU=Floor3,OU=Workstations,{top}",
        "srv": f"OU=Servers,{top}",
    }
    for dn in ous.values():
        assert admin.add(dn, "organizationalUnit"), admin.result  # type: ignore[attr-defined]
    now = datetime.datetime.now(datetime.UTC)
    recent = str(to_filetime(now - datetime.timedelta(days=3)))
    stale = str(to_filetime(now - datetime.timedelta(days=200)))
    plan = {
        # role: (OU, enabled, dNSHostName, operatingSystem, lastLogonTimestamp)
        "ws_a": ("floor", True, True, "Windows 10 Enterprise", recent),
        "ws_b": ("floor", True, True, "Windows 10 Enterprise", recent),
        "ws_c": ("ws", True, True, "Windows 11 Pro", None),
        "srv_a": ("srv", True, True, "Windows Server 2019 Standard", recent),
        "off": ("ws", False, True, "Windows 10 Enterprise", recent),
        "old": ("ws", True, True, "Windows 7 Professional", stale),
        "nodns": ("srv", True, False, None, recent),
    }  # fmt: skip
    names = {role: unique_name("c") for role in plan}
    for role, (ou, enabled, dns, os_name, logon) in plan.items():
        name = names[role]
        samba_dc.add_computer(name, ou=ous[ou])
        dn = f"CN={name},{ous[ou]}"
        # samba-tool makes the account disabled (4098) and without a DNS name: set what a
        # joined Windows machine has (userAccountControl 4096 = WORKSTATION_TRUST_ACCOUNT).
        changes: dict[str, str] = {"userAccountControl": "4096" if enabled else "4098"}
        if dns:
            changes["dNSHostName"] = f"{name.lower()}.{samba_dc.realm.lower()}"
        if os_name:
            changes["operatingSystem"] = os_name
            changes["operatingSystemVersion"] = "10.0 (19045)"
        if logon:
            changes["lastLogonTimestamp"] = logon
        modify = {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in changes.items()}
        assert admin.modify(dn, modify), (role, admin.result)  # type: ignore[attr-defined]
    admin.unbind()  # type: ignore[attr-defined]
    try:
        yield Fleet(samba_dc, top, names, dc_name, ca)
    finally:
        samba_dc.samba_tool("ou", "delete", top, "--force-subtree-delete")


def raorch(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAORCH_", "KRB5"))}
    return subprocess.run(
        [sys.executable, "-m", "raorch", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def kerberos_env(fleet: Fleet, tmp_path: Path) -> dict[str, str]:
    ccache = tmp_path / "ccache"
    fleet.dc.kinit(f"Administrator@{fleet.dc.realm}", fleet.dc.admin_password, ccache)
    return {"KRB5_CONFIG": str(fleet.dc.krb5_conf), "KRB5CCNAME": f"FILE:{ccache}"}


def common(fleet: Fleet, out: str) -> list[str]:
    return ["--base-dn", fleet.top, "--user", "CORP\\svc-raorch", "-o", out]


def check_inventory(fleet: Fleet, tmp_path: Path, out: str) -> str:
    names = fleet.names
    text = (tmp_path / out).read_text()
    for role in ("ws_a", "ws_b", "ws_c", "srv_a"):
        assert f"  {names[role]}: {{address: {names[role].lower()}.corp.raorch.test}}" in text
    for role in ("off", "old", "nodns"):
        assert f"  {names[role]}:" not in text
    floor = f"OU=Floor3,OU=Workstations,{fleet.top}"
    assert f"  # CN={names['ws_a']},{floor}; Windows 10 Enterprise 10.0 (19045); last logon" in (
        text
    )
    assert f"  Workstations/Floor3:  # {floor}" in text
    checked = raorch(tmp_path, "validate", "-i", out)
    assert checked.returncode == 0, checked.stderr
    assert "valid: 4 hosts in 3 waves" in checked.stdout
    assert "https:5986, kerberos" in checked.stdout
    return text


def test_kerberos_bind_sealed_and_paged(fleet: Fleet, tmp_path: Path) -> None:
    pytest.importorskip("gssapi")
    made = raorch(
        tmp_path,
        "inventory", "from-ad", "--server", "ldap://127.0.0.1",
        "--server-name", fleet.dc_name, "--page-size", "2",
        "--playbook", str(PLAYBOOK_FILE), *common(fleet, "ad.yaml"),
        env=kerberos_env(fleet, tmp_path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "protected by Kerberos sealing" in made.stdout
    assert "computers found: 7, imported: 4" in made.stdout
    for line in (
        "left out: 1 disabled (userAccountControl ACCOUNTDISABLE)",
        "left out: 1 stale (no logon recorded in lastLogonTimestamp for 90 days)",
        "left out: 1 no dNSHostName (no address to reach)",
    ):
        assert line in made.stdout
    assert f"1 left out, disabled (userAccountControl ACCOUNTDISABLE): {fleet.names['off']}" in (
        made.stderr
    )
    check_inventory(fleet, tmp_path, "ad.yaml")


def test_simple_bind_over_ldaps_and_starttls(fleet: Fleet, tmp_path: Path) -> None:
    env = {PASSWORD_ENV: fleet.dc.admin_password}
    bind = [
        "--bind", "simple", "--bind-user", f"Administrator@{fleet.dc.realm}",
        "--bind-password-ref", f"env:{PASSWORD_ENV}",
        "--ldap-ca", str(fleet.ca), "--server-name", fleet.dc_name,
        "--playbook", str(PLAYBOOK_FILE),
    ]  # fmt: skip
    for server, extra, out in (
        ("ldaps://127.0.0.1", [], "ldaps.yaml"),
        ("ldap://127.0.0.1", ["--start-tls"], "starttls.yaml"),
    ):
        made = raorch(
            tmp_path,
            "inventory", "from-ad", "--server", server, *extra, *bind, *common(fleet, out),
            env=env,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "protected by TLS" in made.stdout
        assert fleet.dc.admin_password not in made.stdout + made.stderr
        check_inventory(fleet, tmp_path, out)


def test_failures_say_what_where_and_what_to_do(fleet: Fleet, tmp_path: Path) -> None:
    pytest.importorskip("gssapi")
    secret = "Not-The-Admin-Passw0rd!"
    simple = [
        "--bind", "simple", "--bind-user", f"Administrator@{fleet.dc.realm}",
        "--bind-password-ref", f"env:{PASSWORD_ENV}", "--ldap-ca", str(fleet.ca),
        "--server-name", fleet.dc_name,
    ]  # fmt: skip
    cases: list[tuple[list[str], dict[str, str], int, str]] = [
        (
            ["--server", "ldaps://127.0.0.1", *simple],
            {PASSWORD_ENV: secret},
            7,
            "error: the directory at ldaps://127.0.0.1 refused the bind as "
            f"Administrator@{fleet.dc.realm}: wrong password",
        ),
        (
            ["--server", "ldaps://127.0.0.1", *simple[:-4]],  # no --ldap-ca, no --server-name
            {PASSWORD_ENV: fleet.dc.admin_password},
            7,
            "error: TLS to the directory at ldaps://127.0.0.1 failed",
        ),
        (
            ["--server", "ldap://127.0.0.1", *simple],
            {PASSWORD_ENV: fleet.dc.admin_password},
            2,
            "error: --server: a simple bind over plain LDAP (ldap://127.0.0.1) sends the "
            "password in clear text",
        ),
        (
            ["--server", "ldap://127.0.0.1", "--insecure-plain-ldap", *simple],
            {PASSWORD_ENV: fleet.dc.admin_password},
            7,
            "refuses a simple bind without TLS (BindSimple: Transport encryption required.)",
        ),
        (
            ["--server", "ldap://127.0.0.1:3899", "--server-name", fleet.dc_name],
            {"KRB5_CONFIG": str(fleet.dc.krb5_conf)},
            7,
            "error: cannot reach the directory at ldap://127.0.0.1:3899: the connection was "
            "refused",
        ),
        (
            ["--server", "ldap://127.0.0.1", "--server-name", fleet.dc_name],
            {"KRB5_CONFIG": str(fleet.dc.krb5_conf), "KRB5CCNAME": f"FILE:{tmp_path}/none"},
            7,
            "error: no Kerberos ticket to bind with. run kinit",
        ),
    ]
    for args, env, code, expected in cases:
        proc = raorch(tmp_path, "inventory", "from-ad", *args, *common(fleet, "x.yaml"), env=env)
        assert proc.returncode == code, (args, proc.stderr)
        assert expected in proc.stderr, proc.stderr
        assert secret not in proc.stdout + proc.stderr
        assert fleet.dc.admin_password not in proc.stdout + proc.stderr
        assert not (tmp_path / "x.yaml").exists()

    env = kerberos_env(fleet, tmp_path)
    proc = raorch(
        tmp_path,
        "inventory", "from-ad", "--server", "ldap://127.0.0.1", "--server-name", fleet.dc_name,
        "--base-dn", f"OU=Nowhere,{fleet.top}", "--user", "CORP\\svc", "-o", "x.yaml",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"error: --base-dn: OU=Nowhere,{fleet.top} does not exist in the directory" in (
        proc.stderr
    )
    # Samba refuses Kerberos inside TLS unless sealed, and sealing inside TLS: the message
    # says to use plain LDAP, which raorch seals.
    proc = raorch(
        tmp_path,
        "inventory", "from-ad", "--server", "ldaps://127.0.0.1", "--ldap-ca", str(fleet.ca),
        "--server-name", fleet.dc_name, *common(fleet, "x.yaml"),
        env=env,
    )  # fmt: skip
    assert proc.returncode == 7
    assert "refused the Kerberos bind over TLS" in proc.stderr and "raorch seals" in proc.stderr
