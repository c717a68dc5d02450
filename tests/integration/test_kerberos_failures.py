"""Every Kerberos failure of the client, produced for real against the Samba AD domain
controller (``samba_dc``), with the real ``raorch`` command.

Most of them happen between the controller and the KDC, before any host answers: a lab host
(which offers NTLM only) is enough as the target. A failure of the account, the KDC or the
clock stops the command before it contacts any host (exit 2, the lab counts no request, the
journal records no rollout); an unknown SPN fails its host only. A KDC out of reach is a KDC
address nothing listens on (what an unreachable KDC is to the client), never the shared DC
stopped; clock skew is the client run under libfaketime against the real KDC.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLI_WAIT, PLAYBOOK_FILE, LabFactory, RaorchCli, unique_name

from raorch.lab import LabHandle
from raorch.lab.samba import REALM, SambaDC, fqdn

pytest.importorskip("gssapi")

PASSWORD = "Kerb-T3st-P@ss"


@pytest.fixture(scope="module")
def lab(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=4)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kerberos_inventory(
    lab: LabHandle,
    path: Path,
    *,
    username: str | None,
    password: bool = True,
    realm: str = REALM,
    kdc: str | None = "127.0.0.1",
    auth: str = "kerberos",
    spn_hosts: dict[str, str | None] | None = None,
) -> Path:
    """The lab's inventory, made a Kerberos one: every host at 127.0.0.1 (its certificate's
    name), its SPN host name the lab host's name in the domain unless ``spn_hosts`` says
    otherwise (None: no spn_host, the address is used), one wave."""
    data: dict[str, Any] = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["playbook"] = str(PLAYBOOK_FILE)
    data["defaults"]["connection"]["auth"] = auth
    if username is None:
        del data["defaults"]["credentials"]
    else:
        data["defaults"]["credentials"] = {"username": username}
        if password:
            data["defaults"]["credentials"]["password"] = "env:KERBEROS_TEST_PASSWORD"
    if kdc is not None:
        data["defaults"]["kerberos"] = {"realm": realm, "kdc": kdc}
    for host, entry in data["hosts"].items():
        name = (spn_hosts or {}).get(host, fqdn(host))
        if name is not None:
            entry.setdefault("connection", {})["spn_host"] = name
    data["waves"] = [{"name": "all", "rest": True, "max_fail_percentage": 100}]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(
    cli: RaorchCli,
    *args: str,
    password: str = PASSWORD,
    ccache: Path | None = None,
    faketime: str | None = None,
    krb5_config: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``raorch ARGS`` with a ticket cache of its own (an empty one unless given), the test
    account's password in the environment, optionally under libfaketime."""
    env = cli.env
    env["KERBEROS_TEST_PASSWORD"] = password
    env["KRB5CCNAME"] = f"FILE:{ccache or cli.home.parent / 'no-ticket-cache'}"
    env.pop("KRB5_CONFIG", None)
    if krb5_config is not None:
        env["KRB5_CONFIG"] = str(krb5_config)
    prefix = ["faketime", "-f", faketime] if faketime else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "raorch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_WAIT,
        stdin=subprocess.DEVNULL,
    )


def assert_stopped_before_any_host(
    lab: LabHandle,
    cli: RaorchCli,
    inventory: Path,
    words: list[str],
    **kwargs: Any,
) -> str:
    """``rollout`` exits 2 with ``words`` in its error, contacting no host and recording no
    rollout; returns the error text."""
    before = lab.stats()["total_requests"]
    done = run(cli, "rollout", "--inventory", str(inventory), "--wave", "all", **kwargs)
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    assert "no host was contacted" in text, text
    for word in words:
        assert word in text, (word, text)
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert lab.stats()["total_requests"] == before
    journal = cli.journal
    assert not journal.exists() or journal.rollout_ids() == []
    return text


@pytest.fixture
def made(samba_dc: SambaDC) -> Iterator[list[str]]:
    """Accounts a test made on the DC (which may be shared): deleted at its end."""
    names: list[str] = []
    yield names
    for name in names:
        samba_dc.delete(name)


@pytest.fixture
def user(samba_dc: SambaDC, made: list[str]) -> Callable[..., str]:
    """A new domain user of this test (unique name), with ``PASSWORD``."""

    def make(prefix: str = "kt", **kwargs: Any) -> str:
        name = unique_name(prefix)
        samba_dc.add_user(name, PASSWORD, **kwargs)
        made.append(name)
        return name

    return make


# ---------------------------------------------------------------- the account


def test_a_wrong_password_stops_the_run_after_one_try(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    name = user("ktbad")
    # A lockout threshold for this account only (a fine-grained password policy), so that
    # the domain counts its failed logons: 4 hosts must cost 1 bad password, not 4.
    pso = unique_name("ktpso")
    samba_dc.samba_tool(
        "domain", "passwordsettings", "pso", "create", pso, "10",
        "--account-lockout-threshold=3",
    )  # fmt: skip
    try:
        samba_dc.samba_tool("domain", "passwordsettings", "pso", "apply", pso, name)
        wrong_password_runs(samba_dc, lab, raorch_cli, name, tmp_path)
    finally:
        samba_dc.samba_tool("domain", "passwordsettings", "pso", "delete", pso)


def wrong_password_runs(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    name: str,
    tmp_path: Path,
) -> None:
    cli = raorch_cli(lab)
    inventory = kerberos_inventory(lab, tmp_path / "inv.yaml", username=f"CORP\\{name}")
    assert_stopped_before_any_host(
        lab,
        cli,
        inventory,
        [
            f"the Kerberos logon of CORP\\{name} failed",
            f"the KDC refused the password of CORP\\{name} ({name}@{REALM})",
            "fix the password that env:KERBEROS_TEST_PASSWORD gives",
        ],
        password="Not-The-P@ssw0rd",
    )
    shown = samba_dc.samba_tool("user", "show", name, "--attributes=badPwdCount,lockoutTime")
    assert "badPwdCount: 1" in shown, shown
    # plan and verify stop the same way.
    for command in ("plan", "verify"):
        done = run(cli, command, "--inventory", str(inventory), password="Not-The-P@ssw0rd")
        assert done.returncode == 2, done.stderr
        assert "the KDC refused the password" in done.stderr
    shown = samba_dc.samba_tool("user", "show", name, "--attributes=badPwdCount")
    assert "badPwdCount: 3" in shown, shown  # one per command


def test_an_expired_password_stops_the_run(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    made: list[str],
    tmp_path: Path,
) -> None:
    name = unique_name("ktexp")
    # pwdLastSet = 0: the password must be changed at the next logon, which the KDC answers
    # as an expired password (KDC_ERR_KEY_EXPIRED).
    samba_dc.samba_tool("user", "create", name, PASSWORD, "--must-change-at-next-login")
    made.append(name)
    inventory = kerberos_inventory(lab, tmp_path / "inv.yaml", username=f"{name}@{REALM}")
    assert_stopped_before_any_host(
        lab,
        raorch_cli(lab),
        inventory,
        [f"the password of {name}@{REALM} has expired", f"kpasswd {name}@{REALM}"],
    )


def test_an_expired_or_disabled_account_stops_the_run(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    expired = user("ktaxp")
    samba_dc.samba_tool("user", "setexpiry", expired, "--days=0")
    disabled = user("ktdis", enabled=False)
    for name in (expired, disabled):
        inventory = kerberos_inventory(lab, tmp_path / f"{name}.yaml", username=name)
        assert_stopped_before_any_host(
            lab,
            raorch_cli(lab),
            inventory,
            [f"the KDC revoked the credentials of {name} ({name}@{REALM})", "Unlock-ADAccount"],
        )


def test_no_ticket_cache_and_no_password_stops_the_run(
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    name = user("ktnoc")
    cli = raorch_cli(lab)
    inventory = kerberos_inventory(lab, tmp_path / "inv.yaml", username=name, password=False)
    assert_stopped_before_any_host(
        lab,
        cli,
        inventory,
        [f"no Kerberos ticket for {name} ({name}@{REALM})", f"run kinit {name}@{REALM}"],
    )
    # No credentials at all: the cache's default principal, absent too.
    inventory = kerberos_inventory(lab, tmp_path / "none.yaml", username=None)
    assert_stopped_before_any_host(
        lab, cli, inventory, ["no Kerberos ticket for the ticket cache's default principal"]
    )


# ---------------------------------------------------------------- the KDC and the realm


def test_an_unreachable_kdc_stops_the_run(
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
    samba_dc: SambaDC,
) -> None:
    name = user("ktkdc")
    port = closed_port()
    cli = raorch_cli(lab)
    inventory = kerberos_inventory(
        lab, tmp_path / "inv.yaml", username=name, kdc=f"127.0.0.1:{port}"
    )
    assert_stopped_before_any_host(
        lab,
        cli,
        inventory,
        [f"no KDC of realm {REALM} answered", f"KDC 127.0.0.1:{port}", f"port ({port}"],
    )
    # The operator's krb5.conf names the real KDC for the realm: the inventory's wins (its
    # realm section is final), so the run still stops.
    inventory = kerberos_inventory(
        lab, tmp_path / "inv2.yaml", username=name, kdc=f"127.0.0.1:{port}"
    )
    assert_stopped_before_any_host(
        lab, cli, inventory, ["no KDC of realm"], krb5_config=samba_dc.krb5_conf
    )
    # With a ticket from the ticket cache, the KDC is needed for the host's service ticket.
    ccache = tmp_path / "ccache"
    samba_dc.kinit(f"{name}@{REALM}", PASSWORD, ccache)
    assert_stopped_before_any_host(
        lab,
        cli,
        kerberos_inventory(lab, tmp_path / "inv3.yaml", username=None, kdc=f"127.0.0.1:{port}"),
        [f"no KDC of realm {REALM} answered"],
        ccache=ccache,
    )


def test_a_wrong_realm_stops_the_run(
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    name = user("ktrlm")
    cli = raorch_cli(lab)
    # A realm the KDC does not serve: Samba answers that it does not know the account.
    inventory = kerberos_inventory(
        lab, tmp_path / "inv.yaml", username=f"CORP\\{name}", realm="WRONG.RAORCH.TEST"
    )
    assert_stopped_before_any_host(
        lab,
        cli,
        inventory,
        [
            f"the KDC does not know the account CORP\\{name} ({name}@WRONG.RAORCH.TEST)",
            "DOMAIN\\user becomes user@WRONG.RAORCH.TEST",
        ],
    )
    # A realm no configuration names (no defaults.kerberos, the system's krb5.conf).
    inventory = kerberos_inventory(
        lab, tmp_path / "inv2.yaml", username=f"{name}@nowhere.raorch.test", kdc=None
    )
    assert_stopped_before_any_host(
        lab,
        cli,
        inventory,
        ["no KDC is known for realm NOWHERE.RAORCH.TEST", "defaults.kerberos"],
    )


def test_a_clock_off_against_the_kdc_stops_the_run(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    if shutil.which("faketime") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs faketime (.ci/run): the faketime command is missing")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    name = user("ktclk")
    ccache = tmp_path / "ccache"
    samba_dc.kinit(f"{name}@{REALM}", PASSWORD, ccache)  # at the real time
    inventory = kerberos_inventory(lab, tmp_path / "inv.yaml", username=None)
    for offset in ("+2h", "-2h"):
        assert_stopped_before_any_host(
            lab,
            raorch_cli(lab),
            inventory,
            ["the clocks differ by more than Kerberos allows", "synchronise this machine's"],
            ccache=ccache,
            faketime=offset,
        )


# ---------------------------------------------------------------- one host's SPN


def test_an_unknown_spn_fails_its_host_only_and_says_how_to_register_it(
    samba_dc: SambaDC,
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    made: list[str],
    tmp_path: Path,
) -> None:
    name = user("ktspn")
    # A host name no computer account has (a host re-imaged under a new name, a deleted
    # account). Deleting the SPN of an existing computer is not enough on Samba: its KDC
    # answers HTTP/<name>.<realm> for any computer account <name>$, SPN or not.
    gone = unique_name("ktgone")
    # A computer account without keys (never given a password): the KDC cannot issue its
    # tickets. The run's logon asks for the first host's ticket: this failure is that host's,
    # and must not stop the run.
    keyless = unique_name("ktkey")
    samba_dc.add_computer(keyless)
    made.append(keyless + "$")
    hosts = lab.hosts
    alias = unique_name("ktalias")
    spn_hosts: dict[str, str | None] = {
        hosts[0]: fqdn(keyless),
        hosts[1]: None,  # addressed by IP, no spn_host
        hosts[2]: fqdn(gone),
        hosts[3]: f"{alias}.corp.raorch.test",  # an alias nobody registered
    }
    inventory = kerberos_inventory(lab, tmp_path / "inv.yaml", username=name, spn_hosts=spn_hosts)
    done = run(raorch_cli(lab), "plan", "--inventory", str(inventory))
    assert done.returncode == 1, done.stdout + done.stderr  # hosts failed, the run went on
    lines = {line.split(" ", 1)[0]: " ".join(line.split()) for line in done.stdout.splitlines()}
    assert (
        f"and HTTP/{fqdn(keyless)}: KDC has no support for encryption type" in (lines[hosts[0]])
    ), lines[hosts[0]]
    assert (
        "the KDC knows no service principal HTTP/127.0.0.1" in lines[hosts[1]]
        and "addressed by IP (127.0.0.1)" in lines[hosts[1]]
        and "set connection.spn_host" in lines[hosts[1]]
    ), lines[hosts[1]]
    upper = gone.upper()
    assert f"the KDC knows no service principal HTTP/{fqdn(gone)}" in lines[hosts[2]]
    assert f"setspn -S HTTP/{fqdn(gone)} {upper}$" in lines[hosts[2]], lines[hosts[2]]
    assert f"setspn -S HTTP/{alias}.corp.raorch.test {alias.upper()}$" in lines[hosts[3]]
    assert "connection.spn_host to the name" in lines[hosts[3]]
    assert PASSWORD not in done.stdout + done.stderr


# ---------------------------------------------------------------- Negotiate


def test_negotiate_stops_on_a_refused_account_and_falls_back_to_ntlm_without_a_kdc(
    lab: LabHandle,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    user: Callable[..., str],
    tmp_path: Path,
) -> None:
    cli = raorch_cli(lab)
    # A refused password would be refused by NTLM too (and counted): stop, as with Kerberos.
    name = user("ktneg")
    inventory = kerberos_inventory(lab, tmp_path / "bad.yaml", username=name, auth="negotiate")
    assert_stopped_before_any_host(
        lab, cli, inventory, ["the KDC refused the password"], password="Not-The-P@ssw0rd"
    )
    # The lab's own account is no domain account: the KDC does not know it, which Negotiate
    # survives with NTLM, as it survives a KDC out of reach. The lab accepts NTLM: the plan
    # works, with a warning.
    for kdc in ("127.0.0.1", f"127.0.0.1:{closed_port()}"):
        inventory = kerberos_inventory(
            lab, tmp_path / "inv.yaml", username="CORP\\labadmin", auth="negotiate", kdc=kdc
        )
        done = run(cli, "plan", "--inventory", str(inventory), password=lab.password)
        assert done.returncode in (0, 4), done.stdout + done.stderr
        assert "auth: negotiate goes on with NTLM" in " ".join(done.stderr.split())
        assert "FAILED" not in done.stdout
