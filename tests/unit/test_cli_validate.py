"""`raorch validate` and the shared error handling: exit codes, stdout/stderr, no tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from raorch.cli.errors import RaorchGroup, handle_errors
from raorch.cli.main import main
from raorch.models.errors import ExitCode, InputError, Location, Problem, RefusedError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "corp.yaml"
PLAYBOOK = ROOT / "playbooks" / "offer-remote-assistance.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_sample_summary() -> None:
    code, out, err = run("validate", "--inventory", str(SAMPLE))
    assert code == ExitCode.OK, err
    assert err == ""
    # hosts per wave, connection settings, what the playbook will set
    assert "1. canary: 2 hosts, all at once; halts at the first failed host" in out
    assert "2. pilot: 5 hosts, batches of 25% of the wave; halts when more than 10% fail" in out
    assert "3. broad: 5 hosts, batches of 4 hosts" in out and "rolls the wave back" in out
    assert "https:5986, ntlm, certificate checked" in out
    assert "http:5985, ntlm" in out and "2 hosts: xp-lab-01, xp-lab-02" in out
    assert "CORP\\svc-raorch, password from env:RAORCH_PASSWORD (12 hosts)" in out
    assert f"playbook   {PLAYBOOK} (from the inventory's playbook:)" in out
    assert "enable Offer Remote Assistance: helpers may view and control" in out
    assert "port 135/TCP from *: Offer Remote Assistance" in out
    assert "enable the firewall rule group @FirewallAPI.dll,-33002 for the domain profile" in out
    assert out.rstrip().endswith("valid: 12 hosts in 3 waves")


def test_validate_kerberos_inventory_summary(tmp_path: Path) -> None:
    inventory = tmp_path / "krb.yaml"
    inventory.write_text(
        f"""playbook: {PLAYBOOK}
domains: [CORP]
defaults:
  connection: {{scheme: https, auth: kerberos}}
  kerberos: {{realm: CORP.EXAMPLE.COM, kdc: 'dc1.corp.example.com:8888'}}
hosts:
  ws1: {{address: 10.0.0.1, connection: {{spn_host: ws1.corp.example.com}}}}
  ws2: {{address: 10.0.0.2, connection: {{spn_host: ws2.corp.example.com}}}}
  ws3:
    address: ws3.corp.example.com
    credentials: {{username: 'CORP\\ops'}}
waves:
  - {{name: all, rest: true}}
""",
        encoding="utf-8",
    )
    code, out, err = run("validate", "--inventory", str(inventory))
    assert code == ExitCode.OK, err
    # spn_host names each host's own SPN: one connection block for the three hosts.
    assert "https:5986, kerberos, certificate checked" in out
    assert "3 hosts: ws1, ws2, ws3" in out
    assert "the default principal of the operator's Kerberos ticket cache (no password) (2" in out
    assert "CORP\\ops, its ticket from the operator's Kerberos ticket cache (1 host)" in out
    assert "kerberos:  realm CORP.EXAMPLE.COM, KDC dc1.corp.example.com:8888" in out


def test_validate_never_reads_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAORCH_PASSWORD", raising=False)
    code, _, _ = run("validate", "-i", str(SAMPLE))
    assert code == 0


def test_validate_explicit_playbook(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(SAMPLE.read_text().replace("playbook: ../playbooks/", "playbook: gone/"))
    pb = tmp_path / "mine.yaml"
    shutil.copy(PLAYBOOK, pb)
    text = pb.read_text().replace("permission: view_and_control", "permission: view")
    pb.write_text(text)
    code, out, err = run("validate", "-i", str(inv), "--playbook", str(pb))
    assert code == 0, err
    assert f"playbook   {pb} (from --playbook)" in out
    assert "helpers may view the user's screen" in out


def test_validate_errors_exit_2_with_located_lines(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    text = SAMPLE.read_text().replace("max_fail_percentage: 10", "max_fail_percentage: 110")
    text = text.replace("    port: 5986\n", "    prot: 5986\n")
    inv.write_text(text)
    code, out, err = run("validate", "-i", str(inv))
    assert code == ExitCode.INVALID_INPUT
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"error: {inv}:") for line in lines)
    line_no = text.splitlines().index("    prot: 5986") + 1
    assert lines[0].startswith(f"error: {inv}:{line_no}:5: defaults.connection.prot: unknown key")
    assert "did you mean 'port'?" in lines[0]
    assert "waves[1].max_fail_percentage: max_fail_percentage must be between 0 and 100" in err
    assert "Traceback" not in err


def test_validate_bad_playbook(tmp_path: Path) -> None:
    pb = tmp_path / "pb.yaml"
    pb.write_text(PLAYBOOK.read_text().replace("'CORP\\RA-Helpers'", "'RA-Helpers'"))
    code, out, err = run("validate", "-i", str(SAMPLE), "-p", str(pb))
    assert code == 2 and out == ""
    assert "offer_remote_assistance.helpers[0]: a helper must be DOMAIN\\name" in err


def test_validate_no_playbook(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(SAMPLE.read_text().replace("playbook: ../playbooks/", "# "))
    code, _, err = run("validate", "-i", str(inv))
    assert code == 2
    assert err.startswith(f"error: {inv}: playbook: no playbook given")


@pytest.mark.parametrize("args", [["validate", "-i", "/nonexistent/x.yaml"], ["validate"]])
def test_missing_file_or_option(args: list[str]) -> None:
    code, _, err = run(*args)
    assert code == 2 and "Traceback" not in err
    assert "file not found" in err or "Missing option '--inventory'" in err


# ---------------------------------------------------------------- the shared wrapper


def _group_with(exc: BaseException) -> click.Group:
    @click.group(cls=RaorchGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise exc

    return group


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (
            RefusedError("wave pilot cannot run", "run canary first"),
            6,
            "error: wave pilot cannot run. run canary first",
        ),
        (
            InputError([Problem(Location("f.yaml", 3, 4, "a.b"), "bad", "fix it")]),
            2,
            "error: f.yaml:3:4: a.b: bad (fix it)",
        ),
    ],
)
def test_group_catches_without_decorator(exc: BaseException, code: int, says: str) -> None:
    result = CliRunner().invoke(_group_with(exc), ["boom"])
    assert result.exit_code == code
    assert result.stderr.strip() == says
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_decorator_on_a_standalone_command() -> None:
    @click.command()
    @handle_errors
    def alone() -> None:
        raise KeyboardInterrupt

    result = CliRunner().invoke(alone, [])
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted"


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("domains: [CORP]\nhosts: {a: {address: x}}\nwaves: [{name: w, hosts: [b]}]\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from raorch.cli.main import main; main()",
            "validate",
            "-i",
            str(inv),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert f"error: {inv}:3:27: waves[0].hosts[0]: unknown host 'b'" in proc.stderr


def test_validate_certificate_hosts_need_no_credentials(tmp_path: Path) -> None:
    (tmp_path / "pb.yaml").write_text(PLAYBOOK.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "c.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "k.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nMII=\n-----END PRIVATE KEY-----\n"
    )
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "playbook: pb.yaml\n"
        "domains: [CORP]\n"
        "defaults:\n"
        "  connection: {scheme: https, auth: certificate, certificate_pem: c.pem,"
        " certificate_key_pem: k.pem}\n"
        "hosts:\n"
        "  h1: {address: 10.0.0.1}\n"
        "waves:\n"
        "  - {name: all, rest: true}\n",
        encoding="utf-8",
    )
    code, out, err = run("validate", "-i", str(inventory))
    assert code == ExitCode.OK, err
    assert "none: the client certificate (auth: certificate) (1 host)" in out


def test_validate_refuses_a_missing_ca_bundle_with_its_location(tmp_path: Path) -> None:
    """Before, `validate` passed and every host then failed at run time with a network-sounding
    hint; now exit 2 with file:line:column and what to do."""
    (tmp_path / "pb.yaml").write_text(PLAYBOOK.read_text(encoding="utf-8"), encoding="utf-8")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "playbook: pb.yaml\n"
        "domains: [CORP]\n"
        "defaults:\n"
        "  connection: {scheme: https, ca_bundle: pki/missing.pem}\n"
        "  credentials: {username: 'CORP\\svc', password: 'env:PW'}\n"
        "hosts:\n"
        "  h1: {address: 10.0.0.1}\n"
        "  h2: {address: 10.0.0.2}\n"
        "waves:\n"
        "  - {name: all, rest: true}\n",
        encoding="utf-8",
    )
    code, _out, err = run("validate", "-i", str(inventory))
    assert code == ExitCode.INVALID_INPUT
    assert f"{inventory}:4:" in err and "ca_bundle" in err and "no such file" in err
    assert err.count("no such file") == 1  # once for the default, not per host
