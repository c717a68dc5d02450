"""The lab's domain controller is a real KDC: a user gets a ticket for a lab host's SPN, and
the host's key (the keytab) accepts it and sees who the client is."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMBA_USER, SAMBA_USER_PASSWORD, unique_name

from raorch.lab.samba import HostAccount, RegisterResult, SambaDC, SambaError, fqdn


def test_a_lab_host_accepts_a_real_kerberos_ticket(
    samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spnego = pytest.importorskip("spnego")
    pytest.importorskip("gssapi")
    host = unique_name("probe")
    spn = samba_dc.add_host(host)
    assert spn == "HTTP/" + fqdn(host)
    ccache = tmp_path / "ccache"
    samba_dc.kinit(f"{SAMBA_USER}@{samba_dc.realm}", SAMBA_USER_PASSWORD, ccache)
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    monkeypatch.setenv("KRB5_KTNAME", str(samba_dc.keytab))
    client = spnego.client(hostname=fqdn(host), service="HTTP", protocol="kerberos")
    server = spnego.server(protocol="kerberos")
    server.step(client.step())
    assert server.complete
    assert server.client_principal == f"{SAMBA_USER}@{samba_dc.realm}"


def test_a_wrong_password_is_refused_by_the_kdc(samba_dc: SambaDC, tmp_path: Path) -> None:
    with pytest.raises(SambaError, match="kinit"):
        samba_dc.kinit(f"{SAMBA_USER}@{samba_dc.realm}", "not-the-password", tmp_path / "cc")


def test_many_hosts_get_accounts_and_keys_over_ldap(
    samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register_hosts: computer accounts over LDAPS and keys derived with AD's salt, which the
    KDC's tickets must decrypt with (for each SPN a client may ask for); a second call with the
    same keytab reuses the accounts; unregister_hosts deletes them."""
    spnego = pytest.importorskip("spnego")
    pytest.importorskip("gssapi")
    tag = unique_name("r").lower()
    hosts = [
        HostAccount(
            f"lab-{i:04d}", f"{tag}-{i}".upper(), f"lab-{i:04d}.{tag}.{samba_dc.realm}".lower()
        )
        for i in (1, 2, 3)
    ]
    keytab = tmp_path / "hosts.keytab"
    assert samba_dc.register_hosts(hosts, keytab) == RegisterResult(3, 0, 0)
    assert samba_dc.register_hosts(hosts, keytab) == RegisterResult(0, 0, 3)
    user, password = unique_name("ru"), "Ru-P@ss-" + unique_name("x")
    samba_dc.ensure_user(user, password)
    ccache = tmp_path / "ccache"
    samba_dc.kinit(f"{user}@{samba_dc.realm}", password, ccache)
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    monkeypatch.setenv("KRB5_KTNAME", str(keytab))
    try:
        for host in hosts:
            for service in ("WSMAN", "HTTP", "HOST"):
                client = spnego.client(hostname=host.fqdn, service=service, protocol="kerberos")
                server = spnego.server(protocol="kerberos")
                server.step(client.step())
                assert server.complete, (host, service)
                assert server.client_principal == f"{user}@{samba_dc.realm}"
    finally:
        assert samba_dc.unregister_hosts(hosts) == 3
        samba_dc.delete(user)
    assert samba_dc.find(hosts[0].account + "$") is None
