"""The lab's domain controller is a real KDC: a user gets a ticket for a lab host's SPN, and
the host's key (the keytab) accepts it and sees who the client is."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMBA_USER, SAMBA_USER_PASSWORD, unique_name

from raorch.lab.samba import SambaDC, SambaError, fqdn


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
