"""The ``raorch`` command: the click group and ``raorch validate``.

Other commands live in their own modules (``raorch.cli.<name>``) and are registered in the block
at the end of this file, one line each. Errors: see ``raorch.cli.errors``.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from raorch import __version__
from raorch.cli import options
from raorch.cli.errors import RaorchGroup, handle_errors
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    GateAction,
    ResolvedInventory,
    Target,
    WaveSpec,
)
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.models.playbook import (
    AddHelpers,
    DcomPolicy,
    OfferState,
    Permission,
    Playbook,
    SolicitedPolicy,
)


class LazyGroup(RaorchGroup):
    """The group whose command modules are imported when their command is used (or listed
    by ``--help``): ``raorch rollout`` does not pay for importing the lab's WinRM server and
    its libraries, ~0.4 s of CPU at every start (``python -X importtime``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}  # command name -> "package.module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.lazy.pop(cmd_name, None)
        if spec is not None:
            self.add_command(_load_command(spec, cmd_name))
        return super().get_command(ctx, cmd_name)


def _load_command(spec: str, name: str) -> click.Command:
    module, _, attribute = spec.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command) or command.name != name:
        raise TypeError(f"{spec} is not the click command {name!r}")
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raorch")
def main() -> None:
    """Roll the Windows "Offer Remote Assistance" configuration out to a fleet over WinRM, in
    waves, with rollback. Exit codes: docs/exit-codes.md."""
    quiet_libraries()


# Libraries that log failures with their tracebacks (pypsrp 0.9 calls log.exception on every
# failed request). raorch classifies each failure itself and reports it per host, scrubbed;
# unconfigured, Python's last-resort handler would print those raw tracebacks on stderr, over
# the dashboard and into CI logs.
_LIBRARY_LOGGERS = ("pypsrp", "psrpcore", "spnego", "urllib3", "requests", "requests_ntlm")


def quiet_libraries() -> None:
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


# ---------------------------------------------------------------- validate


@main.command()
@options.inventory
@options.playbook
@handle_errors
def validate(inventory_path: Path, playbook_opt: Path | None) -> None:
    """Check an inventory and its playbook; show the waves, connections and what will be set.

    Contacts no host and reads no secret. Exit 0 when both files are valid, 2 otherwise.
    """
    inventory = load_inventory(inventory_path)
    playbook_file = resolve_playbook_path(inventory, playbook_opt)
    playbook = load_playbook(playbook_file)
    source = "--playbook" if playbook_opt is not None else "the inventory's playbook:"
    for line in describe_inventory(inventory):
        click.echo(line)
    click.echo("")
    click.echo(f"playbook   {playbook_file} (from {source})")
    for line in describe_playbook(playbook):
        click.echo(line)
    click.echo("")
    click.echo(f"valid: {len(inventory.targets)} hosts in {len(inventory.waves)} waves")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _wave_line(index: int, wave: WaveSpec) -> str:
    gate = (
        "halts at the first failed host"
        if wave.max_fail_percentage == 0
        else f"halts when more than {wave.max_fail_percentage:g}% fail"
    )
    if wave.on_gate_failure is GateAction.ROLLBACK:
        gate += ", then rolls the wave back"
    if wave.batch is None:
        batch = "all at once"
    elif wave.batch.size is not None:
        batch = f"batches of {_plural(wave.batch.size, 'host')}"
    else:
        batch = f"batches of {wave.batch.percent:g}% of the wave"
    extras = ""
    if wave.skipped_counts_as_failed:
        extras += "; skipped hosts count as failed"
    if wave.deadline is not None:
        extras += f"; {wave.deadline:g}s per host at most"
    return f"  {index}. {wave.name}: {_plural(len(wave.hosts), 'host')}, {batch}; {gate}{extras}"


def _ports_text(ports: list[int]) -> str:
    if len(ports) <= 4:
        return ",".join(str(p) for p in ports)
    return f"{ports[0]}-{ports[-1]} ({len(ports)} ports)"


def _connection_text(c: Connection, ports: list[int]) -> str:
    words = [f"{c.scheme.value}:{_ports_text(ports)}", c.auth.value]
    if c.scheme.value == "https":
        if c.cert_validation:
            words.append(f"certificate checked against {c.ca_bundle or 'the system CAs'}")
        else:
            words.append("certificate NOT checked")
    if c.auth is AuthMethod.CERTIFICATE:
        words.append(f"client certificate {c.certificate_pem}")
    words.append(f"timeouts {c.connect_timeout:g}s connect / {c.operation_timeout:g}s operation")
    if c.insecure:
        words.append("INSECURE (explicitly allowed)")
    return ", ".join(words)


def _hosts_text(hosts: list[str], limit: int = 8) -> str:
    shown = ", ".join(hosts[:limit])
    return shown + (f", ... (+{len(hosts) - limit})" if len(hosts) > limit else "")


def _account_text(target: Target) -> str:
    account = target.credentials
    if account is None and target.connection.auth.kerberos:
        return "the default principal of the operator's Kerberos ticket cache (no password)"
    if account is None:
        return "none: the client certificate (auth: certificate)"
    if account.password is None:
        return f"{account.username}, its ticket from the operator's Kerberos ticket cache"
    return f"{account.username}, password from {account.password}"


def describe_inventory(inventory: ResolvedInventory) -> list[str]:
    """The validate summary of an inventory, as lines (no secrets: only references)."""
    lines = [
        f"inventory  {inventory.path}",
        f"domains    {', '.join(inventory.domains)}",
        "",
        f"waves ({_plural(len(inventory.targets), 'host')}):",
    ]
    for i, wave in enumerate(inventory.waves, 1):
        lines.append(_wave_line(i, wave))
        lines.append(f"     {_hosts_text(list(wave.hosts))}")
    # Connections that differ only by their port (a lab: one port per host) are one block.
    by_connection: dict[Connection, list[str]] = {}
    ports: dict[Connection, set[int]] = {}
    by_account: Counter[str] = Counter()
    for target in inventory.targets.values():
        # spn_host names each host's own SPN: it does not make another kind of connection.
        shared = replace(target.connection, port=0, spn_host=None)
        by_connection.setdefault(shared, []).append(target.name)
        ports.setdefault(shared, set()).add(target.connection.port)
        by_account[_account_text(target)] += 1
    lines += ["", "connections:"]
    for connection, hosts in by_connection.items():
        lines.append(f"  {_connection_text(connection, sorted(ports[connection]))}")
        lines.append(f"     {_plural(len(hosts), 'host')}: {_hosts_text(hosts)}")
    lines += ["", "credentials:"]
    lines += [f"  {account} ({_plural(n, 'host')})" for account, n in by_account.items()]
    if inventory.kerberos is not None:
        lines += [
            "",
            f"kerberos:  realm {inventory.kerberos.realm}, KDC {inventory.kerberos.kdc} "
            "(raorch's own krb5.conf)",
        ]
    return lines


def _helpers_text(helpers: tuple[str, ...], limit: int = 8) -> str:
    """The helpers, or the first few of a long list and where the rest are."""
    if len(helpers) <= limit:
        return ", ".join(helpers)
    return (
        f"{len(helpers)} helpers: {', '.join(helpers[:limit])}, ... "
        f"(+{len(helpers) - limit}; the playbook lists them all)"
    )


def describe_playbook(playbook: Playbook) -> list[str]:
    """What the playbook will set, in plain words (exact values: docs/playbook.md)."""
    ora = playbook.offer_remote_assistance
    out: list[str] = [f'"{playbook.name}" will, on every eligible host:']
    if ora.state is OfferState.ENABLED:
        level = "view and control" if ora.permission is Permission.VIEW_AND_CONTROL else "view"
        out.append(
            f"  - enable Offer Remote Assistance: helpers may {level} the user's screen; "
            f"helpers: {_helpers_text(ora.helpers)} (each checked on the host before any change)"
        )
    else:
        out.append("  - disable Offer Remote Assistance and clear its helpers list")
    solicited = {
        SolicitedPolicy.REQUIRE: "refuse hosts where Solicited Remote Assistance is off "
        "(offers fail there; nothing is changed on such hosts)",
        SolicitedPolicy.ENABLE: "turn Solicited Remote Assistance on (policy fAllowToGetHelp=1)",
        SolicitedPolicy.IGNORE: "leave Solicited Remote Assistance alone",
    }
    out.append(f"  - {solicited[playbook.solicited_remote_assistance]}")
    if playbook.dcom is DcomPolicy.ENABLE:
        out.append("  - make sure DCOM is enabled (HKLM\\SOFTWARE\\Microsoft\\Ole EnableDCOM = Y)")
    admins = {
        AddHelpers.LEGACY_ONLY: "add the helpers to the local Administrators group on "
        "Windows XP / Server 2003 hosts only",
        AddHelpers.ALL: "add the helpers to the local Administrators group on every host",
        AddHelpers.NEVER: "leave the local Administrators group alone",
    }
    if ora.state is OfferState.ENABLED:
        out.append(f"  - {admins[playbook.local_administrators.add_helpers]}")
    legacy = playbook.firewall.legacy
    if legacy is not None:
        profiles = " and ".join(p.value for p in legacy.profiles)
        out.append(f"  - XP / 2003 firewall policy, {profiles} profiles: allow")
        for port in legacy.port_entries():
            state = "" if port.enabled else " (entry disabled)"
            out.append(
                f"      port {port.port}/{port.protocol} from {port.scope}: {port.name}{state}"
            )
        for program in legacy.program_entries():
            state = "" if program.enabled else " (entry disabled)"
            out.append(f"      program {program.path} from {program.scope}: {program.name}{state}")
    modern = playbook.firewall.modern
    if modern is not None:
        profiles = " and ".join(p.value for p in modern.profiles)
        out.append(
            f"  - Vista and later: enable the firewall rule group {modern.rule_group} "
            f"for the {profiles} profile{'s' if len(modern.profiles) > 1 else ''}"
        )
    if legacy is None and modern is None:
        out.append("  - leave the firewall alone")
    return out


# ---------------------------------------------------------------- command registration


def register(spec: str) -> None:
    """Add the click command ``"package.module:name"`` to ``main``, by name: its module is
    imported when the command runs (``LazyGroup``). The command's name is ``name``.

    By name rather than by import at the top, so each command module is one line below and
    several people can add theirs without touching each other's lines.
    """
    name = spec.partition(":")[2]
    if not name or name in main.lazy or name in main.commands:
        raise ValueError(f"register({spec!r}): no command name, or {name!r} is taken")
    main.lazy[name] = spec


# One line per command module, e.g. register("raorch.cli.lab:lab"):
register("raorch.cli.lab:lab")
register("raorch.cli.status:status")
register("raorch.cli.plan:plan")
register("raorch.cli.rollout:rollout")
register("raorch.cli.demo:demo")
register("raorch.cli.rollback:rollback")
register("raorch.cli.verify:verify")
register("raorch.cli.history:history")
register("raorch.cli.history:show")
register("raorch.cli.acceptance:acceptance")
register("raorch.cli.init:init")
register("raorch.cli.report:report")
register("raorch.cli.inventory:inventory")
register("raorch.cli.worker:worker")
