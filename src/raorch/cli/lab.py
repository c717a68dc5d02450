"""``raorch lab``: an emulated Windows fleet that speaks real WinRM (docs/lab.md).

Thin: options in, ``raorch.lab`` does the work, text out.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from raorch.cli.errors import RaorchGroup
from raorch.lab.api import run_foreground
from raorch.lab.directory import DirectoryError, load_accounts
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
from raorch.lab.server import LabConfig, LabServer
from raorch.lab.state import host_file, lab_password, marker_file, read_json
from raorch.models.errors import RaorchError

DEFAULT_STATE_DIR = Path(".raorch") / "lab"


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
@click.option("--auth", type=click.Choice(["ntlm", "basic"]), default="ntlm", show_default=True)
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
    help="YAML list of extra DOMAIN\\name accounts of the directory.",
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
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
)
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
    auth: str,
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
    try:
        parse_mix(mix)
        parse_languages(languages)
        accounts = load_accounts(accounts_path) if accounts_path else []
    except (MixError, DirectoryError) as exc:
        raise RaorchError(str(exc)) from None
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    password, password_ref = lab_password(state_dir)
    config = LabConfig(
        hosts=count,
        password=password,
        state_dir=state_dir,
        mix=mix,
        auth=(auth,),
        scheme=scheme,
        username=user,
        faults_path=faults_path.resolve() if faults_path else None,
        accounts=accounts,
        base_port=base_port,
        seed=seed,
        fresh=fresh,
        languages=languages,
    )

    def ready(server: LabServer) -> None:
        write_inventory(
            InventorySpec(
                ports=server.ports,
                scheme=scheme,
                auth=auth,
                username=user,
                password_ref=password_ref,
                ca_bundle=server.ca_bundle,
            ),
            inventory_out,
        )
        ports = sorted(server.ports.values())
        click.echo(
            f"raorch lab: {count} hosts on 127.0.0.1, ports {ports[0]}-{ports[-1]}, "
            f"{scheme} + {auth}"
        )
        click.echo(f"  inventory   {inventory_out}")
        if server.ca_bundle:
            click.echo(f"  CA bundle   {server.ca_bundle}")
        click.echo(f"  login       {user}, password from {password_ref}")
        click.echo(f"  faults      {server.faults_path} (re-read when it changes)")
        click.echo(f"  state       {state_dir} (raorch lab state HOST --state-dir {state_dir})")
        click.echo(f"  try: raorch validate -i {inventory_out}")
        click.echo("Ctrl-C stops the lab.")
        sys.stdout.flush()

    try:
        run_foreground(config, on_ready=ready, parent_pid=parent_pid)
    except (FaultsError, MixError, DirectoryError) as exc:
        raise RaorchError(str(exc)) from None
    except OSError as exc:
        raise RaorchError(f"the lab could not start: {exc}") from None
    click.echo("raorch lab: stopped")


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
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
)
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
