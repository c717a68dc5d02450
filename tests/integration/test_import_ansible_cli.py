"""The real `raorch inventory from-ansible` on Ansible inventories shaped like the Ansible docs
(tests/data/ansible), then the real `raorch validate` on what it wrote; its failures through the
command line; and a `raorch plan` against a lab through an inventory imported from an Ansible
file that describes the lab."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import PLAYBOOK_FILE, RaorchCli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from raorch.lab import LabHandle

DATA = Path(__file__).resolve().parents[1] / "data" / "ansible"
INI_PASSWORDS = ("Sup3r-Secret-Ansible!", "Pass-SouthEast_9!")
CliFactory = Callable[[LabHandle], RaorchCli]
LabFactory = Callable[..., LabHandle]


def raorch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAORCH_")}
    return subprocess.run(
        [sys.executable, "-m", "raorch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def write_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_ini_from_the_docs_imports_and_validates(tmp_path: Path) -> None:
    shutil.copy(DATA / "hosts.ini", tmp_path / "hosts.ini")
    made = raorch(
        tmp_path,
        "inventory", "from-ansible", "hosts.ini", "-o", "raorch.yaml",
        "--playbook", str(PLAYBOOK_FILE),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = (tmp_path / "raorch.yaml").read_text()
    for secret in INI_PASSWORDS:
        assert secret not in out + made.stdout + made.stderr
    warnings = made.stderr.splitlines()
    # Every password is named where it is written, by its variable, never by its value.
    assert any(
        w.startswith("warning: hosts.ini:29: ansible_password ([southeast:vars])") for w in warnings
    )
    assert any(
        w.startswith("warning: hosts.ini:39: ansible_password ([windows:vars])") for w in warnings
    )
    assert any(
        "ansible_psrp_message_encryption ([windows:vars]) is not imported" in w for w in warnings
    )
    assert any("left out, ansible_connection=ssh: build01" in w for w in warnings)
    assert "hosts: 13 imported (psrp: 13), 2 left out" in made.stdout
    assert (
        "account CORP\\ra-southeast: 3 host(s), password from env:RAORCH_PASSWORD_2" in made.stdout
    )
    assert (
        "  # hosts.ini:8 [webservers] (psrp); scheme from hosts.ini:8 ansible_psrp_protocol "
        "(host jumper); port from hosts.ini:8 ansible_port (host jumper)\n"
        "  jumper: {address: 192.0.2.50, connection: {scheme: http, port: 5985}}"
    ) in out

    checked = raorch(tmp_path, "validate", "-i", "raorch.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "valid: 13 hosts in 3 waves" in checked.stdout
    assert "http:5985, ntlm" in checked.stdout and "2 hosts: jumper" not in checked.stdout
    assert "CORP\\svc-raorch, password from env:RAORCH_PASSWORD (10 hosts)" in checked.stdout


def test_yaml_with_group_vars_imports_and_validates(tmp_path: Path) -> None:
    shutil.copytree(DATA / "yaml", tmp_path / "ansible")
    write_ca(tmp_path / "ansible" / "ca.pem")
    made = raorch(
        tmp_path / "ansible",
        "inventory", "from-ansible", "hosts.yml", "-o", "../raorch.yaml",
        "--playbook", str(PLAYBOOK_FILE), "--domain", "CORP",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "warning: group_vars/all/vault.yml:1: encrypted with Ansible Vault: not read" in (
        made.stderr
    )
    assert "warning: hosts.yml:29: ansible_password (group windows vars): the password" in (
        made.stderr
    )
    assert "$ANSIBLE_VAULT" not in (tmp_path / "raorch.yaml").read_text()
    data = yaml.safe_load((tmp_path / "raorch.yaml").read_text())
    assert data["defaults"]["connection"]["ca_bundle"] == "ansible/ca.pem"  # beside the output
    assert data["defaults"]["connection"]["operation_timeout"] == 40
    assert data["hosts"]["legacy-xp"]["connection"] == {"scheme": "http", "port": 5985}

    checked = raorch(tmp_path, "validate", "-i", "raorch.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "valid: 7 hosts in 3 waves" in checked.stdout
    assert "https:5986, kerberos" in checked.stdout


def test_failures_through_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "vaulted.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n3633\n")
    proc = raorch(tmp_path, "inventory", "from-ansible", "vaulted.yml", "-o", "o.yaml")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: vaulted.yml:1: the file is encrypted with Ansible Vault")

    (tmp_path / "bad.ini").write_text("[win]\nw1\n[windows:children]\nwin\nwnidows2\n")
    proc = raorch(tmp_path, "inventory", "from-ansible", "bad.ini", "-o", "o.yaml")
    assert proc.returncode == 2
    assert "error: bad.ini:5: section [windows:children] names group 'wnidows2'" in proc.stderr

    # On a host line the value is shell-quoted (shlex, as Ansible reads it): quote the backslash.
    (tmp_path / "ok.ini").write_text("[w]\nw1 ansible_connection=psrp ansible_user='CORP\\svc'\n")
    literal = "MyPassw0rd!"
    proc = raorch(
        tmp_path, "inventory", "from-ansible", "ok.ini", "-o", "o.yaml", "--password-ref", literal
    )
    assert proc.returncode == 2 and "--password-ref" in proc.stderr
    assert literal not in proc.stdout + proc.stderr

    (tmp_path / "o.yaml").write_text("kept\n")
    proc = raorch(tmp_path, "inventory", "from-ansible", "ok.ini", "-o", "o.yaml")
    assert proc.returncode == 6 and "--force" in proc.stderr
    assert (tmp_path / "o.yaml").read_text() == "kept\n"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_plan_runs_on_an_inventory_imported_from_ansible(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    """An Ansible inventory describing the lab (psrp, NTLM over https with its CA, one port
    per host, the password written in it as Ansible users do): imported, then `raorch plan`
    reaches every host with it."""
    lab = lab_factory(hosts=4)
    assert lab.ca_bundle is not None
    lines = ["[lab]"]
    lines += [
        f"{name} ansible_host=127.0.0.1 ansible_port={port}" for name, port in lab.ports.items()
    ]
    lines += [
        "[lab:vars]",
        "ansible_connection=psrp",
        "ansible_psrp_auth=ntlm",
        f"ansible_psrp_ca_cert={lab.ca_bundle}",
        f"ansible_user={lab.username}",
        f"ansible_password={lab.password}",
    ]
    (tmp_path / "hosts.ini").write_text("\n".join(lines) + "\n")
    imported = tmp_path / "raorch.yaml"
    made = raorch(
        tmp_path,
        "inventory", "from-ansible", "hosts.ini", "-o", str(imported),
        "--password-ref", "env:RAORCH_LAB_PASSWORD", "--domain", "CORP",
        "--waves", "canary:1,broad",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert lab.password not in imported.read_text() + made.stdout + made.stderr

    cli = raorch_cli(lab)
    plan = cli.run("plan", "-i", str(imported), "--playbook", str(PLAYBOOK_FILE))
    # 4: some host would change; every host was reached and planned.
    assert plan.returncode == 4, plan.stdout + plan.stderr
    for name in lab.ports:
        assert name in plan.stdout
    assert "unreachable" not in plan.stdout.lower()
