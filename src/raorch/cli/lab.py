"""``raorch lab``: an emulated Windows fleet that speaks real WinRM (docs/lab.md).

Thin: options in, ``raorch.lab`` does the work, text out.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from raorch.cli.errors import RaorchGroup
from raorch.lab.api import run_foreground
from raorch.lab.auth import SUPPORTED, kerberos_available
from raorch.lab.directory import DirectoryError, read_accounts
from raorch.lab.domain import DomainConfig
from raorch.lab.faults import FaultsError
from raorch.lab.host import Host
from raorch.lab.inventory import InventorySpec, write_inventory
from raorch.lab.profiles import (
    DEFAULT_LANGUAGES,
    DEFAULT_MIX,
    PROFILES,
    MixError,
    parse_languages,
    parse_mix,
)
from raorch.lab.samba import NETBIOS_DOMAIN, SambaError, samba_available
from raorch.lab.server import LabConfig, LabServer
from raorch.lab.state import host_file, lab_password, marker_file, read_json
from raorch.models.errors import RaorchError
from raorch.models.inventory import SITE_NAME

DEFAULT_STATE_DIR = Path(".raorch") / "lab"
# Where a lab keeps its hosts' state and its marker: `up` writes it, `down` and `state` read it.
_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
)


@click.group(cls=RaorchGroup)
def lab() -> None:
    """An emulated Windows fleet on 127.0.0.1 that speaks real WinRM / PowerShell remoting."""


@lab.command()
@click.option(
    "--hosts",
    "count",
    type=click.IntRange(1, 60000),
    required=True,
    help="Number of emulated hosts.",
)
@click.option(
    "--mix",
    default=DEFAULT_MIX,
    show_default=True,
    help="Profiles and weights, e.g. win10-ent:70,xp-pro:5 (see `raorch lab profiles`).",
)
@click.option(
    "--auth",
    default=None,
    help="What the hosts' WinRM listeners accept, comma-separated: ntlm, basic, negotiate, "
    "kerberos (the first is the inventory's). Default: ntlm; with --directory samba, "
    "negotiate,kerberos (Windows' default).",
)
@click.option(
    "--directory",
    type=click.Choice(["embedded", "samba"]),
    default="embedded",
    show_default=True,
    help="The hosts' domain: emulated, or a real Samba AD domain controller (Kerberos, LDAP) "
    "provisioned in <state-dir>/samba (docs/lab.md, 'A real domain').",
)
@click.option(
    "--refuse-ntlm",
    is_flag=True,
    help="The hosts refuse NTLM, as in a domain that restricts it (--directory samba).",
)
@click.option("--scheme", type=click.Choice(["https", "http"]), default="https", show_default=True)
@click.option(
    "--faults",
    "faults_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Faults YAML (docs/lab.md); re-read when it changes. Default: <state-dir>/faults.yaml.",
)
@click.option(
    "--accounts",
    "accounts_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML list of extra DOMAIN\\name accounts of the directory ({group: ...} entries are "
    "groups).",
)
@click.option(
    "--user", default="CORP\\labadmin", show_default=True, help="The login account (DOMAIN\\name)."
)
@click.option(
    "--inventory-out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the inventory of the fleet.",
)
@_state_dir
@click.option(
    "--base-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Host N listens on BASE+N-1. Default: free ports chosen by the system.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the fleet's initial states."
)
@click.option("--fresh", is_flag=True, help="Forget saved host states in the state dir.")
@click.option(
    "--languages",
    default=DEFAULT_LANGUAGES,
    show_default=True,
    help="UI languages and weights (en-US, de-DE, fr-FR).",
)
@click.option(
    "--sites",
    default="",
    help="Deal the hosts to these sites in turn, e.g. paris,lyon (a group per site in the "
    "inventory), for raorch worker --site NAME.",
)
@click.option(
    "--exit-with",
    "parent_pid",
    type=int,
    default=None,
    hidden=True,
    help="Stop when the process with this PID is no longer the lab's parent (raorch demo).",
)
def up(
    count: int,
    mix: str,
    auth: str | None,
    directory: str,
    refuse_ntlm: bool,
    scheme: str,
    faults_path: Path | None,
    accounts_path: Path | None,
    user: str,
    inventory_out: Path,
    state_dir: Path,
    base_port: int | None,
    seed: int,
    fresh: bool,
    languages: str,
    sites: str,
    parent_pid: int | None,
) -> None:
    """Start the fleet in the foreground (Ctrl-C stops it) and write its inventory.

    The login password comes from RAORCH_LAB_PASSWORD when set; otherwise the lab makes one
    and keeps it in <state-dir>/password (owner-only)."""
    if "\\" not in user:
        raise RaorchError(f"--user {user!r} is not DOMAIN\\name", "write it like 'CORP\\labadmin'")
    if base_port is not None and base_port + count - 1 > 65535:
        raise RaorchError(
            f"--base-port {base_port} + {count} hosts passes port 65535",
            "choose a lower --base-port",
        )
    methods = _auth_methods(auth, directory, refuse_ntlm, user)
    site_names = tuple(s.strip() for s in sites.split(",") if s.strip())
    if len(set(site_names)) != len(site_names) or not all(SITE_NAME.match(s) for s in site_names):
        raise RaorchError(
            f"--sites {sites!r} is not a list of distinct site names",
            "letters, digits, '.', '_' and '-', comma-separated, e.g. paris,lyon",
        )
    try:
        parse_mix(mix)
        parse_languages(languages)
        accounts_file = read_accounts(accounts_path) if accounts_path else None
    except (MixError, DirectoryError) as exc:
        raise RaorchError(str(exc)) from None
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    password, password_ref = lab_password(state_dir)
    domain = DomainConfig(str(state_dir / "samba")) if directory == "samba" else None
    config = LabConfig(
        hosts=count,
        password=password,
        state_dir=state_dir,
        mix=mix,
        auth=methods,
        scheme=scheme,
        username=user,
        faults_path=faults_path.resolve() if faults_path else None,
        accounts=accounts_file.names if accounts_file else [],
        base_port=base_port,
        seed=seed,
        fresh=fresh,
        languages=languages,
        domain=domain,
        groups=accounts_file.groups if accounts_file else [],
        refuse_ntlm=refuse_ntlm,
    )

    def ready(server: LabServer) -> None:
        write_inventory(
            InventorySpec(
                ports=server.ports,
                scheme=scheme,
                auth=methods[0],
                username=user,
                password_ref=password_ref,
                ca_bundle=server.ca_bundle,
                domain=server.domain.to_json() if server.domain else None,
                sites=site_names,
            ),
            inventory_out,
        )
        ports = sorted(server.ports.values())
        click.echo(
            f"raorch lab: {count} hosts on 127.0.0.1, ports {ports[0]}-{ports[-1]}, "
            f"{scheme} + {','.join(methods)}" + (" (NTLM refused)" if refuse_ntlm else "")
        )
        click.echo(f"  inventory   {inventory_out}")
        if server.ca_bundle:
            click.echo(f"  CA bundle   {server.ca_bundle}")
        click.echo(f"  login       {user}, password from {password_ref}")
        if server.domain is not None:
            d = server.domain
            realm, name = d.realm, user.partition("\\")[2]
            click.echo(f"  domain      {realm} ({d.netbios}), DC in {d.dc.directory}")
            click.echo(
                "              KDC and LDAP on 127.0.0.1 (88, 389, 636), stopped with the lab"
            )
            click.echo(f"  kerberos    export KRB5_CONFIG={d.dc.krb5_conf}")
            click.echo(f"              kinit {name}@{realm}   (the lab's password)")
            click.echo(
                f"              SPNs WSMAN/, HTTP/, HOST/<host>.{d.dns_domain} "
                "(address 127.0.0.1: name the host in the SPN)"
            )
            if d.registered is not None:
                r = d.registered
                click.echo(
                    f"  computers   {r.created} created, {r.reset} given a new password, "
                    f"{r.reused} reused; keys in {d.keytab}"
                )
        click.echo(f"  faults      {server.faults_path} (re-read when it changes)")
        click.echo(f"  state       {state_dir} (raorch lab state HOST --state-dir {state_dir})")
        click.echo(f"  try: raorch validate -i {inventory_out}")
        click.echo("Ctrl-C stops the lab.")
        sys.stdout.flush()

    try:
        run_foreground(config, on_ready=ready, parent_pid=parent_pid)
    except (FaultsError, MixError, DirectoryError) as exc:
        raise RaorchError(str(exc)) from None
    except SambaError as exc:
        raise RaorchError(
            f"the lab's domain controller: {exc}", "see docs/lab.md, 'A real domain'"
        ) from None
    except OSError as exc:
        raise RaorchError(f"the lab could not start: {exc}") from None
    click.echo("raorch lab: stopped")


def _auth_methods(
    auth: str | None, directory: str, refuse_ntlm: bool, user: str
) -> tuple[str, ...]:
    """--auth as a tuple of listener methods, checked against --directory."""
    default = "negotiate,kerberos" if directory == "samba" else "ntlm"
    methods = tuple(m.strip().lower() for m in (auth or default).split(",") if m.strip())
    unknown = [m for m in methods if m not in SUPPORTED]
    if not methods or unknown:
        raise RaorchError(
            f"--auth {auth!r}: unknown method {', '.join(unknown) or '(none)'}",
            f"use one or more of {', '.join(SUPPORTED)}, comma-separated",
        )
    kerberos = [m for m in methods if m in ("kerberos", "negotiate")]
    if directory != "samba" and (kerberos or refuse_ntlm):
        what = f"--auth {kerberos[0]}" if kerberos else "--refuse-ntlm"
        raise RaorchError(
            f"{what} needs a domain controller", "add --directory samba (docs/lab.md)"
        )
    if directory == "samba":
        missing = samba_available() or kerberos_available()
        if missing:
            raise RaorchError(f"--directory samba: {missing}")
        domain = user.partition("\\")[0]
        if domain.upper() != NETBIOS_DOMAIN:
            raise RaorchError(
                f"--user {user!r} is not an account of the lab's domain {NETBIOS_DOMAIN}",
                f"write it like '{NETBIOS_DOMAIN}\\labadmin'",
            )
    return methods


@lab.command()
@_state_dir
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the lab to stop.",
)
def down(state_dir: Path, timeout: float) -> None:
    """Stop the lab running from --state-dir (and its domain controller, if it started one)."""
    marker_path = marker_file(state_dir)
    try:
        pid = int(read_json(marker_path)["pid"])
    except (OSError, ValueError, KeyError):
        raise RaorchError(
            f"no lab runs from {state_dir} (no {marker_path.name})",
            "give the --state-dir of `raorch lab up`",
        ) from None
    if not _alive(pid):
        raise RaorchError(f"the lab of {state_dir} (pid {pid}) is not running")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and marker_path.exists():
        if time.monotonic() > deadline:
            raise RaorchError(
                f"the lab (pid {pid}) did not stop within {timeout:g} s",
                f"kill {pid}; its domain controller, if any, stops with it",
            )
        time.sleep(0.2)
    click.echo(f"raorch lab: stopped (pid {pid})")


@lab.command()
def profiles() -> None:
    """List the host profiles a --mix can name, with their facts."""
    click.echo(f"{'profile':<16} {'os':<11} {'sku':>3} {'ps':<4} {'domain':<7} caption")
    for p in PROFILES.values():
        click.echo(
            f"{p.name:<16} {p.os_version:<11} {p.sku:>3} {p.ps_version:<4} "
            f"{'yes' if p.part_of_domain else 'no':<7} {p.caption.strip()}"
        )
        click.echo(f"{'':<16} {p.description}")
    click.echo(f"\ndefault --mix: {DEFAULT_MIX}")


@lab.command()
@click.argument("host")
@_state_dir
def state(host: str, state_dir: Path) -> None:
    """Print one host's emulated state as JSON (live when the lab runs)."""
    data = _live_state(state_dir, host)
    if data is None:
        path = host_file(state_dir, host)
        if not path.exists():
            raise RaorchError(
                f"no state for host {host!r} in {state_dir}",
                "check the name (lab-0001, ...) and --state-dir of `raorch lab up`",
            )
        data = Host.from_json(read_json(path)).to_json()
    click.echo(json.dumps(data, indent=2))


def _live_state(state_dir: Path, host: str) -> dict[str, Any] | None:
    marker_path = marker_file(state_dir)
    if not marker_path.exists():
        return None
    try:
        marker = read_json(marker_path)
        if not _alive(int(marker["pid"])):
            return None
        req = urllib.request.Request(
            f"http://127.0.0.1:{marker['admin_port']}/state/{host}",
            headers={"X-Lab-Token": str(marker["admin_token"])},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RaorchError(
                f"the running lab has no host {host!r}", "names are lab-0001, lab-0002, ..."
            ) from None
        return None
    except (OSError, ValueError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
