"""`raorch rollout` over Kerberos, end to end: the real command, the real pypsrp client, lab
hosts that are members of a real Samba AD domain (``running_lab(directory="samba")``), the
real KDC. Over HTTPS (channel binding) and HTTP (every message sealed), with a password
reference and with the operator's ticket cache (no password anywhere); a host that refuses
NTLM; a host whose clock is off.

The inventory is the lab's, with the Kerberos fields: ``auth: kerberos``, each host's
``spn_host`` (the hosts listen on 127.0.0.1, their SPNs name them), ``defaults.kerberos``
(raorch's own krb5.conf: no KRB5_CONFIG is set for the command).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLI_WAIT, PLAYBOOK_FILE, LabFactory, RaorchCli, unique_name

from raorch.lab import LabHandle, running_lab
from raorch.lab.auth import SPNEGO_PROTOCOL
from raorch.lab.samba import SambaDC

pytest.importorskip("gssapi")

PASSWORD = "Krb-Rollout-P@ss-" + unique_name("p")
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.fixture(scope="module")
def login(samba_dc: SambaDC) -> Iterator[str]:
    """This module's login user (a Domain Admin the labs create with ``PASSWORD``); deleted
    at the end, the DC may be shared."""
    name = unique_name("kra")
    yield "CORP\\" + name
    samba_dc.delete(name)


def domain_lab(lab_factory: LabFactory, samba_dc: SambaDC, login: str, **kwargs: Any) -> LabHandle:
    return lab_factory(
        hosts=3,
        mix="win10-ent:1",
        languages="en-US:1",
        auth="negotiate,kerberos",  # Windows' default listener
        directory="samba",
        samba_dc=samba_dc,
        user=login,
        password=PASSWORD,
        **kwargs,
    )


def inventory(lab: LabHandle, path: Path, *, auth: str = "kerberos", password: bool) -> Path:
    data: dict[str, Any] = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["playbook"] = str(PLAYBOOK_FILE)
    data["defaults"]["connection"]["auth"] = auth
    data["defaults"]["kerberos"] = {"realm": lab.realm, "kdc": "127.0.0.1"}
    if password:
        data["defaults"]["credentials"] = {
            "username": lab.username,
            "password": "env:KERBEROS_TEST_PASSWORD",
        }
    else:
        del data["defaults"]["credentials"]  # the ticket cache's default principal
    for host, entry in data["hosts"].items():
        entry.setdefault("connection", {})["spn_host"] = lab.fqdn(host)
    data["waves"] = [{"name": "all", "rest": True, "max_fail_percentage": 100}]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(
    cli: RaorchCli, *args: str, password: str | None, ccache: Path
) -> subprocess.CompletedProcess[str]:
    """The command with its own ticket cache; the password in the environment only when
    given (the ticket-cache runs have none anywhere)."""
    env = {k: v for k, v in cli.env.items() if k not in ("KRB5_CONFIG", "RAORCH_LAB_PASSWORD")}
    env["KRB5CCNAME"] = f"FILE:{ccache}"
    if password is not None:
        env["KERBEROS_TEST_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "raorch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_WAIT,
        stdin=subprocess.DEVNULL,
    )


def sessions_since(lab: LabHandle, counts: dict[str, int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for host in lab.hosts:
        out += lab.state(host)["runtime"]["session_log"][counts.get(host, 0) :]
    return out


def session_counts(lab: LabHandle) -> dict[str, int]:
    return {h: len(lab.state(h)["runtime"]["session_log"]) for h in lab.hosts}


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_rollout_over_kerberos_with_a_password_and_with_the_ticket_cache(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    tmp_path: Path,
    scheme: str,
) -> None:
    lab = domain_lab(lab_factory, samba_dc, login, scheme=scheme)
    encryption = SPNEGO_PROTOCOL if scheme == "http" else None

    # 1. A password reference; an empty ticket cache (raorch gets its own ticket).
    cli = raorch_cli(lab)
    with_password = inventory(lab, tmp_path / "password.yaml", password=True)
    before = session_counts(lab)
    empty = tmp_path / "empty-ccache"
    done = run(
        cli, "rollout", "-i", str(with_password), "--wave", "all", "--no-dashboard",
        password=PASSWORD, ccache=empty,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli.journal.outcome_counts("all") == {"changed": 3}
    sessions = sessions_since(lab, before)
    assert sessions and all(s["mechanism"] == "kerberos" for s in sessions), sessions
    assert {s["user"].lower() for s in sessions} == {login.lower()}
    assert {s["encryption"] for s in sessions} == {encryption}
    assert not empty.exists()  # the operator's cache was not touched
    assert PASSWORD not in done.stdout + done.stderr
    done = run(cli, "rollback", "--last", password=PASSWORD, ccache=empty)
    assert done.returncode == 0, done.stdout + done.stderr

    # 2. No password anywhere: the operator's ticket (kinit) from the cache.
    ccache = tmp_path / "ccache"
    samba_dc.kinit(lab.principal(), PASSWORD, ccache)
    cli = raorch_cli(lab)
    from_cache = inventory(lab, tmp_path / "cache.yaml", password=False)
    assert "password" not in from_cache.read_text()
    before = session_counts(lab)
    done = run(
        cli, "rollout", "-i", str(from_cache), "--wave", "all", "--no-dashboard",
        password=None, ccache=ccache,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli.journal.outcome_counts("all") == {"changed": 3}
    done = run(cli, "verify", "-i", str(from_cache), password=None, ccache=ccache)
    assert done.returncode == 0, done.stdout + done.stderr
    sessions = sessions_since(lab, before)
    assert sessions and all(s["mechanism"] == "kerberos" for s in sessions), sessions
    assert {s["encryption"] for s in sessions} == {encryption}
    # The hosts' service tickets joined the operator's cache, as kvno would add them: one
    # per host, for its SPN HTTP/<spn_host> (not pypsrp's default host/<address>).
    klist = subprocess.run(
        ["klist", "-c", f"FILE:{ccache}"], capture_output=True, text=True, check=True
    ).stdout
    for host in lab.hosts:
        assert f"HTTP/{lab.fqdn(host)}@{lab.realm}" in klist, klist
    assert "host/" not in klist.lower() and "127.0.0.1" not in klist, klist


def test_negotiate_chooses_kerberos_in_a_rollout(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    tmp_path: Path,
) -> None:
    lab = domain_lab(lab_factory, samba_dc, login, scheme="https")
    cli = raorch_cli(lab)
    path = inventory(lab, tmp_path / "inv.yaml", auth="negotiate", password=True)
    # lab-0003 named by a name no account has: no ticket for it, and Negotiate falls back to
    # NTLM for that host (with the user name as written, CORP\...), as Windows does.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["hosts"]["lab-0003"]["connection"]["spn_host"] = unique_name("nx") + ".corp.raorch.test"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    before = session_counts(lab)
    done = run(cli, "plan", "-i", str(path), password=PASSWORD, ccache=tmp_path / "none")
    assert done.returncode in (0, 4), done.stdout + done.stderr
    for host, mechanism in (
        ("lab-0001", "negotiate-kerberos"),
        ("lab-0002", "negotiate-kerberos"),
        ("lab-0003", "negotiate-ntlm"),
    ):
        sessions = lab.state(host)["runtime"]["session_log"][before[host] :]
        assert sessions and {s["mechanism"] for s in sessions} == {mechanism}, (host, sessions)


def test_a_host_that_refuses_ntlm_fails_naming_kerberos_and_kerberos_works(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    tmp_path: Path,
) -> None:
    lab = domain_lab(lab_factory, samba_dc, login, scheme="https", refuse_ntlm=True)
    cli = raorch_cli(lab)
    ntlm = yaml.safe_load(inventory(lab, tmp_path / "k.yaml", password=True).read_text())
    ntlm["defaults"]["connection"]["auth"] = "ntlm"
    ntlm["defaults"].pop("kerberos")
    for entry in ntlm["hosts"].values():
        entry["connection"].pop("spn_host")
    path = tmp_path / "ntlm.yaml"
    path.write_text(yaml.safe_dump(ntlm, sort_keys=False), encoding="utf-8")
    before = session_counts(lab)
    done = run(
        cli, "rollout", "-i", str(path), "--wave", "all", "--no-dashboard", "--json",
        password=PASSWORD, ccache=tmp_path / "none",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    hosts = cli.journal.hosts("all")
    assert {h["outcome"] for h in hosts.values()} == {"failed"}
    for row in hosts.values():
        text = " ".join(str(row["reason"]).split())
        assert row["stage"] == "auth", row
        assert "the password is wrong, or the host refuses NTLM" in text, text
        assert "offers Negotiate, Kerberos" in text, text
    assert cli.journal.snapshots() == {}  # nothing read, nothing written
    assert sessions_since(lab, before) == []
    # The same hosts with Kerberos: the rollout goes through.
    cli = raorch_cli(lab)
    path = inventory(lab, tmp_path / "kerberos.yaml", password=True)
    done = run(
        cli, "rollout", "-i", str(path), "--wave", "all", "--no-dashboard",
        password=PASSWORD, ccache=tmp_path / "none",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_host_whose_clock_is_off_refuses_the_ticket(
    samba_dc: SambaDC,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    tmp_path: Path,
) -> None:
    """The lab's hosts run 20 minutes behind the KDC (libfaketime in the lab's process): the
    logon (controller and KDC agree) passes, and each host refuses the ticket: a failure of
    that host, whose message names the host's clock first."""
    if not FAKETIME_LIB.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs faketime: {FAKETIME_LIB} missing")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    user = "CORP\\" + unique_name("krs")
    with running_lab(
        hosts=2,
        mix="win10-ent:1",
        languages="en-US:1",
        auth="negotiate,kerberos",
        scheme="https",
        directory="samba",
        samba_dc=samba_dc,
        user=user,
        password=PASSWORD,
        env={"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "-20m"},
    ) as lab:
        try:
            cli = raorch_cli(lab)
            path = inventory(lab, tmp_path / "inv.yaml", password=True)
            done = run(cli, "plan", "-i", str(path), password=PASSWORD, ccache=tmp_path / "none")
            assert done.returncode == 1, done.stdout + done.stderr
            failed = [
                " ".join(line.split()) for line in done.stdout.splitlines() if "FAILED" in line
            ]
            assert len(failed) == 2, done.stdout
            for line in failed:
                assert (
                    f"the host refused the Kerberos ticket for HTTP/{lab.fqdn('lab-0001')}"
                    in (line)
                    or f"HTTP/{lab.fqdn('lab-0002')}" in line
                ), line
                assert "clock may differ from the domain's by more than 5 minutes" in line
        finally:
            samba_dc.delete(user.partition("\\")[2])


def test_the_domain_labs_own_inventory_plans_over_kerberos_unedited(
    lab_factory: LabFactory,
    samba_dc: SambaDC,
    login: str,
    raorch_cli: Callable[[LabHandle], RaorchCli],
    tmp_path: Path,
) -> None:
    """What `raorch lab up --directory samba` writes is enough: the realm and KDC, each host's
    spn_host; no KRB5_CONFIG, no edits, the lab's password from the environment."""
    lab = domain_lab(lab_factory, samba_dc, login, scheme="https")
    written = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    assert written["defaults"]["connection"]["auth"] == "negotiate"
    assert written["defaults"]["kerberos"] == {"realm": lab.realm, "kdc": "127.0.0.1"}
    for host in lab.hosts:
        assert written["hosts"][host]["connection"]["spn_host"] == lab.fqdn(host)
    data = dict(written, playbook=str(PLAYBOOK_FILE))  # the checkout's playbook, by path
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cli = raorch_cli(lab)
    before = session_counts(lab)
    env_password = cli.env["RAORCH_LAB_PASSWORD"]
    done = subprocess.run(
        [sys.executable, "-m", "raorch", "plan", "-i", str(path)],
        env={
            **{k: v for k, v in cli.env.items() if k != "KRB5_CONFIG"},
            "RAORCH_LAB_PASSWORD": env_password,
            "KRB5CCNAME": f"FILE:{tmp_path / 'empty-ccache'}",
        },
        capture_output=True,
        text=True,
        timeout=CLI_WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode in (0, 4), done.stdout + done.stderr
    sessions = sessions_since(lab, before)
    assert sessions and {s["mechanism"] for s in sessions} == {"negotiate-kerberos"}, sessions
