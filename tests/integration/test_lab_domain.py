"""Lab hosts in a real domain (a Samba AD DC): Kerberos and Negotiate with the real pypsrp
client, over HTTPS (channel binding) and over HTTP (WinRM message encryption); a host that
refuses NTLM; who authenticated each session (``lab state``); the access check; accounts
resolved in the DC (objectSid, user or group, disabled, deleted, unknown) and cached.

The labs attach to the ``samba_dc`` fixture's DC (one per machine; share it with
``RAORCH_TEST_SAMBA_DIR``): each lab gets its own host DNS names and login user, and every
account a test creates has a unique name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import BATCH_SCRIPT, SAMBA_USER, SAMBA_USER_PASSWORD, LabClient, unique_name
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.lab import LabHandle
from raorch.lab.auth import KERBEROS_PROTOCOL, SPNEGO_PROTOCOL
from raorch.lab.samba import SambaDC

pytest.importorskip("gssapi")

LabFactory = Callable[..., LabHandle]
RAORCH = [sys.executable, "-c", "from raorch.cli.main import main; main()"]
PASSWORD = "Lab-P@ssw0rd-" + unique_name("p")
RESOLVE = [{"Op": "ResolveAccount", "Account": "CORP\\jdoe"}]


@pytest.fixture(scope="module")
def login(samba_dc: SambaDC) -> Iterator[str]:
    """This module's login user: the lab sets its password, so no other lab may share it
    (the labs create it; deleted at the end, the DC may be shared)."""
    name = unique_name("adm")
    yield "CORP\\" + name
    samba_dc.delete(name)


@pytest.fixture(autouse=True)
def krb5_config(samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client (this process) finds the KDC through the DC's krb5.conf."""
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))


def domain_lab(lab_factory: LabFactory, samba_dc: SambaDC, login: str, **kwargs: Any) -> LabHandle:
    kwargs.setdefault("hosts", 3)
    kwargs.setdefault("mix", "win10-ent:1")
    kwargs.setdefault("languages", "en-US:1")
    return lab_factory(
        directory="samba", samba_dc=samba_dc, user=login, password=PASSWORD, **kwargs
    )


@pytest.fixture
def ccache(
    samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str], None]:
    """kinit PRINCIPAL into a ticket cache of this test, named by KRB5CCNAME."""

    def kinit(principal: str, password: str) -> None:
        path = tmp_path / "ccache"
        samba_dc.kinit(principal, password, path)
        monkeypatch.setenv("KRB5CCNAME", f"FILE:{path}")

    return kinit


def run(handle: LabHandle, host: str, **overrides: Any) -> list[dict[str, Any]]:
    """One session (open a pool, one pipeline, close) with the real pypsrp client; the
    overrides are WSMan's arguments (auth, username, password...)."""
    kwargs = {**handle.wsman_kwargs(host), **overrides}
    with WSMan(handle.address, **kwargs) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(BATCH_SCRIPT)
        ps.add_parameter("Operations", RESOLVE)
        return list(ps.invoke())


def last_session(handle: LabHandle, host: str) -> dict[str, Any]:
    sessions: list[dict[str, Any]] = handle.state(host)["runtime"]["session_log"]
    return sessions[-1]


# ---------------------------------------------------------------- Kerberos and Negotiate


@pytest.mark.parametrize(
    ("scheme", "listener", "encryption"),
    [
        # A listener with Kerberos only: pypsrp uses the Kerberos scheme, and over HTTP the
        # HTTP-Kerberos-session-encrypted protocol ([MS-WSMV] 2.2.9.1.2).
        ("http", "kerberos", KERBEROS_PROTOCOL),
        # Windows' default (Negotiate and Kerberos): pypsrp prefers the Negotiate scheme and
        # sends its Kerberos token there; over HTTPS with channel binding, no message sealing.
        ("https", "negotiate,kerberos", None),
        ("http", "negotiate,kerberos", SPNEGO_PROTOCOL),
    ],
)
def test_kerberos_with_the_operators_ticket_cache(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
    scheme: str,
    listener: str,
    encryption: str | None,
) -> None:
    handle = domain_lab(lab_factory, samba_dc, login, auth=listener, scheme=scheme)
    ccache(handle.principal(), PASSWORD)
    [out] = run(handle, "lab-0002", auth="kerberos", username=None, password=None)
    assert out["Ok"], out
    assert out["Sid"] == _objectsid(samba_dc, SAMBA_USER)
    session = last_session(handle, "lab-0002")
    assert session["mechanism"] == "kerberos"
    assert session["user"].lower() == login.lower()
    assert session["encryption"] == encryption


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_kerberos_with_a_password(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    scheme: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ticket cache: gssapi gets the ticket from the user name and password pypsrp
    passes (the principal form user@REALM)."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'empty-ccache'}")
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme=scheme)
    [out] = run(handle, "lab-0001", auth="kerberos")
    assert out["Ok"], out
    assert last_session(handle, "lab-0001")["mechanism"] == "kerberos"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_negotiate_chooses_kerberos(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
    scheme: str,
) -> None:
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme=scheme)
    ccache(handle.principal(), PASSWORD)
    [out] = run(handle, "lab-0003", auth="negotiate", username=None, password=None)
    assert out["Ok"], out
    session = last_session(handle, "lab-0003")
    assert session["mechanism"] == "negotiate-kerberos"
    assert session["encryption"] == (SPNEGO_PROTOCOL if scheme == "http" else None)


def test_ntlm_still_works_where_the_domain_allows_it(
    lab_factory: LabFactory, samba_dc: SambaDC, login: str
) -> None:
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme="http")
    [out] = run(handle, "lab-0001", auth="ntlm", username=login)
    assert out["Ok"], out
    assert last_session(handle, "lab-0001")["mechanism"] == "ntlm"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_host_that_refuses_ntlm(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
    scheme: str,
) -> None:
    """pypsrp with auth="ntlm": its NTLM handshake is carried to the AUTHENTICATE message,
    answered 401 offering Negotiate and Kerberos only; pypsrp raises AuthenticationError.
    Kerberos still works on the same host, and the refused attempt opened no session."""
    handle = domain_lab(
        lab_factory,
        samba_dc,
        login,
        auth="negotiate,kerberos",
        scheme=scheme,
        refuse_ntlm=True,
    )
    sessions = handle.state("lab-0001")["runtime"]["sessions"]
    with pytest.raises(AuthenticationError, match="with ntlm"):
        run(handle, "lab-0001", auth="ntlm", username=login)
    assert handle.state("lab-0001")["runtime"]["sessions"] == sessions
    url = f"{handle.scheme}://{handle.address}:{handle.ports['lab-0001']}/wsman"
    verify = str(handle.ca_bundle) if handle.ca_bundle else False
    answer = requests.post(url, data=b"", verify=verify, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Negotiate, Kerberos"
    ccache(handle.principal(), PASSWORD)
    [out] = run(handle, "lab-0001", auth="kerberos", username=None, password=None)
    assert out["Ok"], out


def test_a_ticket_for_another_host_is_refused(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
) -> None:
    """A client that names lab-0002 in the SPN while talking to lab-0001 holds a ticket
    lab-0001's key cannot open on Windows: refused (401), no session."""
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme="https")
    ccache(handle.principal(), PASSWORD)
    sessions = handle.state("lab-0001")["runtime"]["sessions"]
    with pytest.raises(AuthenticationError):
        run(
            handle,
            "lab-0001",
            auth="kerberos",
            username=None,
            password=None,
            negotiate_hostname_override=handle.fqdn("lab-0002"),
        )
    assert handle.state("lab-0001")["runtime"]["sessions"] == sessions


FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_a_host_whose_clock_is_off_refuses_tickets(
    samba_dc: SambaDC, ccache: Callable[[str, str], None], tmp_path: Path
) -> None:
    """running_lab(env=...) reaches the lab's process: with libfaketime the hosts' clock runs
    20 minutes behind the KDC's, more than Kerberos' 5 minutes of allowed skew, and the
    ticket is refused. Its computer accounts are the handle's ``computer_account``."""
    if not FAKETIME_LIB.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs faketime: {FAKETIME_LIB} missing")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    from raorch.lab import running_lab

    env = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "-20m"}
    user = "CORP\\" + unique_name("skw")
    with running_lab(
        hosts=1,
        mix="win10-ent:1",
        languages="en-US:1",
        auth="negotiate,kerberos",
        scheme="http",
        directory="samba",
        samba_dc=samba_dc,
        user=user,
        password=PASSWORD,
        env=env,
    ) as handle:
        try:
            assert samba_dc.find(handle.computer_account("lab-0001") + "$") is not None
            ccache(handle.principal(), PASSWORD)
            with pytest.raises(AuthenticationError):
                run(handle, "lab-0001", auth="kerberos", username=None, password=None)
        finally:
            samba_dc.delete(user.partition("\\")[2])


# ---------------------------------------------------------------- the access check


def test_only_the_hosts_administrators_get_a_session(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
) -> None:
    """jdoe (a plain domain user) authenticates with Kerberos but is not in the host's
    Administrators: WinRM's answer is HTTP 500, a WSManFault 0x80070005 "Access is denied."
    (pypsrp: WSManFaultError). A user in Domain Admins
    (which every domain host's Administrators holds) gets a session, named as its account."""
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme="https")
    ccache(f"{SAMBA_USER}@{samba_dc.realm}", SAMBA_USER_PASSWORD)
    with pytest.raises(WSManFaultError) as denied:
        run(handle, "lab-0001", auth="kerberos", username=None, password=None)
    assert denied.value.code == 2147942405  # 0x80070005, E_ACCESSDENIED
    assert denied.value.reason == "Access is denied."
    admin = unique_name("dadm")
    samba_dc.ensure_user(admin, PASSWORD, admin=True)
    try:
        ccache(f"{admin}@{samba_dc.realm}", PASSWORD)
        [out] = run(handle, "lab-0001", auth="kerberos", username=None, password=None)
        assert out["Ok"], out
        assert last_session(handle, "lab-0001")["user"] == f"CORP\\{admin}"
    finally:
        samba_dc.delete(admin)


def test_lab_state_names_the_mechanism_of_each_session(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    ccache: Callable[[str, str], None],
) -> None:
    handle = domain_lab(lab_factory, samba_dc, login, auth="negotiate,kerberos", scheme="https")
    ccache(handle.principal(), PASSWORD)
    run(handle, "lab-0002", auth="kerberos", username=None, password=None)
    run(handle, "lab-0002", auth="negotiate", username=None, password=None)
    run(handle, "lab-0002", auth="ntlm", username=login)
    shown = subprocess.run(
        [*RAORCH, "lab", "state", "lab-0002", "--state-dir", str(handle.state_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    log = json.loads(shown.stdout)["runtime"]["session_log"]
    assert [s["mechanism"] for s in log[-3:]] == ["kerberos", "negotiate-kerberos", "ntlm"]
    assert {s["user"].lower() for s in log[-3:]} == {login.lower()}


# ---------------------------------------------------------------- accounts from the DC


def _objectsid(dc: SambaDC, name: str, kind: str = "user") -> str:
    """The account's objectSid as `samba-tool user show` / `group show` prints it."""
    shown = dc.samba_tool(kind, "show", name, "--attributes=objectSid")
    match = re.search(r"^objectSid: (S-1-5-21-[\d-]+)$", shown, re.MULTILINE)
    assert match, shown
    return match.group(1)


@pytest.fixture(scope="module")
def accounts(samba_dc: SambaDC) -> Iterator[dict[str, str]]:
    """A user, a disabled user, a group and a deleted user, made with samba-tool."""
    names = {
        "user": unique_name("acu"),
        "disabled": unique_name("acd"),
        "group": unique_name("grp"),
        "deleted": unique_name("acx"),
    }
    samba_dc.add_user(names["user"], PASSWORD)
    samba_dc.add_user(names["disabled"], PASSWORD, enabled=False)
    samba_dc.add_group(names["group"], (names["user"],))
    samba_dc.add_user(names["deleted"], PASSWORD)
    samba_dc.samba_tool("user", "delete", names["deleted"])
    yield names
    for key in ("user", "disabled", "group"):
        samba_dc.delete(names[key])


def test_hosts_resolve_accounts_in_the_dc(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    accounts: dict[str, str],
    lab_client: LabClient,
) -> None:
    handle = domain_lab(lab_factory, samba_dc, login, auth="ntlm", scheme="https")
    ops = [
        {"Op": "ResolveAccount", "Account": f"CORP\\{accounts[k]}"}
        for k in ("user", "disabled", "group", "deleted")
    ] + [{"Op": "ResolveAccount", "Account": "CORP\\nobody-" + unique_name("n")}]
    user, disabled, group, deleted, unknown = lab_client.run_batch(handle, "lab-0001", ops).outputs
    assert user["Ok"] and user["Sid"] == _objectsid(samba_dc, accounts["user"])
    # A disabled account still translates, as on Windows; the lab says it is disabled.
    assert disabled["Ok"] and disabled["Sid"] == _objectsid(samba_dc, accounts["disabled"])
    assert group["Ok"] and group["Sid"] == _objectsid(samba_dc, accounts["group"], "group")
    for gone in (deleted, unknown):
        assert not gone["Ok"] and gone["ErrorKind"] == "NotMapped"
    info = {k: handle.account("lab-0001", f"CORP\\{accounts[k]}") for k in accounts}
    assert info["user"]["directory"]["kind"] == "user"
    assert info["user"]["directory"]["disabled"] is False
    assert info["disabled"]["directory"]["disabled"] is True
    assert info["group"]["directory"]["kind"] == "group"
    assert info["deleted"]["mapped"] is False and info["deleted"]["directory"] is None
    # Trusted and untrusted domains stay emulated.
    assert handle.account("lab-0001", "PARTNER\\helpdesk")["mapped"] is True
    assert handle.account("lab-0001", "OTHER\\stranger")["error"] == "NotMapped"


def test_a_fleet_asks_the_dc_once_per_account(
    lab_factory: LabFactory, samba_dc: SambaDC, login: str, lab_client: LabClient
) -> None:
    """Six hosts resolve the same new account: the DC is asked about it once (the lab's
    cache), not once per host."""
    handle = domain_lab(lab_factory, samba_dc, login, auth="ntlm", scheme="https", hosts=6)
    name = unique_name("cch")
    samba_dc.ensure_user(name, PASSWORD)
    try:
        before = handle.stats()
        for host in handle.hosts:
            [out] = lab_client.run_batch(
                handle, host, [{"Op": "ResolveAccount", "Account": f"CORP\\{name}"}]
            ).outputs
            assert out["Ok"], out
        after = handle.stats()
    finally:
        samba_dc.delete(name)
    assert after["ldap_queries"] - before["ldap_queries"] <= 2
    assert after["ldap_cache_hits"] - before["ldap_cache_hits"] >= 5


# ---------------------------------------------------------------- raorch's pre-flight


def test_preflight_checks_helpers_against_the_dc(
    lab_factory: LabFactory, samba_dc: SambaDC, login: str, accounts: dict[str, str]
) -> None:
    """raorch's own pre-flight (run_host, PLAN) through the lab (NTLM) meets the real
    directory: the helpers it resolves carry the DC's objectSids; a deleted helper refuses
    the host (helper_not_found) before anything is written."""
    from raorch.engine.host import HostMode, run_host
    from raorch.models.load import load_inventory, load_playbook
    from raorch.models.outcomes import Outcome, Stage
    from raorch.models.playbook import OfferRemoteAssistance, OfferState
    from raorch.planning.refusal import RefusalKind

    handle = domain_lab(lab_factory, samba_dc, login, auth="ntlm", scheme="https")
    inventory = load_inventory(handle.inventory_path)
    root = Path(__file__).resolve().parents[2]
    base = load_playbook(root / "playbooks" / "offer-remote-assistance.yaml")

    def plan(*helpers: str) -> Any:
        offer = OfferRemoteAssistance(state=OfferState.ENABLED, helpers=helpers)
        playbook = base.model_copy(update={"offer_remote_assistance": offer})
        return run_host(
            inventory.targets["lab-0003"],
            handle.password,
            playbook,
            inventory.domains,
            HostMode.PLAN,
        )

    helper = f"CORP\\{accounts['user']}"
    report = plan("CORP\\RA-Helpers", helper)
    assert report.outcome is not Outcome.FAILED and not report.refusals, report.reason
    assert report.snapshot is not None
    sids = {a.account: a.sid for a in report.snapshot.accounts}
    assert sids == {
        "CORP\\RA-Helpers": _objectsid(samba_dc, "RA-Helpers", "group"),
        helper: _objectsid(samba_dc, accounts["user"]),
    }
    refused = plan("CORP\\RA-Helpers", f"CORP\\{accounts['deleted']}")
    assert refused.outcome is Outcome.SKIPPED
    assert refused.reason is not None and refused.reason.stage is Stage.PREFLIGHT
    assert [r.kind for r in refused.refusals] == [RefusalKind.HELPER_NOT_FOUND]
