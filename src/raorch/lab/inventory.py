"""The inventory ``raorch lab up`` writes for its fleet (format: docs/inventory.md).

Written as plain YAML data here, not through raorch's inventory models: the lab imports
nothing from raorch outside ``raorch.lab``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raorch.lab.state import atomic_write

PLAYBOOK = Path("playbooks") / "offer-remote-assistance.yaml"


@dataclass(frozen=True, slots=True)
class InventorySpec:
    ports: dict[str, int]  # host name -> port, in fleet order
    scheme: str
    auth: str
    username: str
    password_ref: str  # env:NAME or file:PATH
    ca_bundle: Path | None
    domains: tuple[str, ...] = ("CORP",)
    # A domain lab's lab.json "domain" (realm, dns_domain, krb5_conf...): said in the header.
    domain: dict[str, Any] | None = None
    # raorch lab up --sites: the hosts dealt to these sites in turn (a group per site), so
    # that every wave spans them (raorch worker --site NAME, docs/workers.md).
    sites: tuple[str, ...] = ()


def find_playbook() -> Path | None:
    """The repository's playbook, when raorch runs from a checkout (editable install) or the
    working directory is one; otherwise the copy shipped in the package (an installed raorch
    has no ``playbooks/`` folder: ``raorch demo`` must work from any directory)."""
    here = Path(__file__).resolve()
    for root in (here.parents[3], Path.cwd()):
        candidate = root / PLAYBOOK
        if candidate.is_file():
            return candidate
    # Package data, read as a file; no raorch code outside raorch.lab is imported for it.
    shipped = here.parents[1] / "samples" / PLAYBOOK.name
    return shipped if shipped.is_file() else None


def wave_sizes(count: int) -> tuple[int, int]:
    """(canary, pilot) sizes: about 2% and 18% of the fleet, at least one host each while
    hosts remain for the next wave."""
    canary = max(1, round(count * 0.02)) if count else 0
    pilot = max(1, round(count * 0.18)) if count > canary else 0
    return min(canary, count), min(pilot, max(0, count - canary))


def build_inventory(spec: InventorySpec, inventory_path: Path) -> dict[str, Any]:
    base = inventory_path.resolve().parent
    connection: dict[str, Any] = {"scheme": spec.scheme, "auth": spec.auth}
    if spec.scheme == "https":
        connection["cert_validation"] = True
        if spec.ca_bundle is not None:
            connection["ca_bundle"] = str(spec.ca_bundle.resolve())
    if spec.auth == "basic" and spec.scheme == "http":
        # Basic sends the password in clear over plain HTTP: only ever on 127.0.0.1 here.
        connection["insecure"] = True
    names = list(spec.ports)
    canary, pilot = wave_sizes(len(names))
    data: dict[str, Any] = {}
    playbook = find_playbook()
    if playbook is not None:
        data["playbook"] = os.path.relpath(playbook, base)
    data["domains"] = list(spec.domains)
    data["defaults"] = {
        "connection": connection,
        "credentials": {"username": spec.username, "password": spec.password_ref},
    }
    if spec.sites:
        data["groups"] = {
            site: {"hosts": names[i :: len(spec.sites)], "site": site}
            for i, site in enumerate(spec.sites)
        }
    kerberos = spec.domain is not None and spec.auth in ("kerberos", "negotiate")
    if kerberos and spec.domain is not None:
        # The domain's realm and its KDC on loopback, in raorch's own krb5.conf, so that no
        # KRB5_CONFIG is needed (docs/inventory.md, "Kerberos and Negotiate").
        data["defaults"]["kerberos"] = {
            "realm": spec.domain["realm"],
            "kdc": spec.domain.get("kdc", "127.0.0.1"),
        }
    data["hosts"] = {
        name: {"address": "127.0.0.1", "connection": _host_connection(spec, name, port, kerberos)}
        for name, port in spec.ports.items()
    }
    data["waves"] = [
        {
            "name": "canary",
            "hosts": names[:canary],
            "max_fail_percentage": 0,
            "on_gate_failure": "halt",
        },
        {
            "name": "pilot",
            "hosts": names[canary : canary + pilot],
            "max_fail_percentage": 5,
            "batch": "25%",
            "on_gate_failure": "rollback",
        },
        {
            "name": "broad",
            "rest": True,
            "max_fail_percentage": 10,
            "batch": "20%",
            "on_gate_failure": "halt",
        },
    ]
    # The loader refuses empty waves: keep only those that get hosts.
    data["waves"] = [
        w
        for w, size in zip(data["waves"], (canary, pilot, len(names) - canary - pilot), strict=True)
        if size > 0
    ]
    return data


def _host_connection(spec: InventorySpec, name: str, port: int, kerberos: bool) -> dict[str, Any]:
    connection: dict[str, Any] = {"port": port}
    if kerberos and spec.domain is not None:
        # Every host is 127.0.0.1: the SPN (HTTP/<spn_host>) names the host itself, as its
        # computer account's SPNs do (lab-0001.corp.raorch.test).
        connection["spn_host"] = f"{name}.{spec.domain['dns_domain']}"
    return connection


def write_inventory(spec: InventorySpec, inventory_path: Path) -> None:
    data = build_inventory(spec, inventory_path)
    header = (
        "# Written by `raorch lab up` for its emulated fleet (127.0.0.1, one port per host).\n"
        "# It is rewritten on every start; ports change unless --base-port is given.\n"
    )
    if spec.domain:
        d = spec.domain
        header += (
            f"# Domain {d['realm']} (KDC 127.0.0.1; export KRB5_CONFIG={d['krb5_conf']}).\n"
            f"# Kerberos: host NAME's SPNs are WSMAN/, HTTP/ and HOST/NAME.{d['dns_domain']};\n"
            "# the client connects to 127.0.0.1 and names the host in the SPN.\n"
        )
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    inventory_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(inventory_path, text.encode(), 0o644)
