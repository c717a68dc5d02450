"""`raorch inventory from-ansible | from-ad`: write a raorch inventory from where a fleet is
already described (docs/inventory.md, "Importing an inventory").

Thin: the importers (``raorch.importers``) read the source into a draft and the writer checks
and writes it; this prints the warnings (stderr), the summary and what to run next.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from raorch.cli.errors import handle_errors
from raorch.importers.ansible import AnsibleOptions, import_ansible
from raorch.importers.draft import ImportResult
from raorch.importers.waves import DEFAULT_WAVES, parse_waves
from raorch.importers.writer import write_inventory
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import SecretKind, SecretRef
from raorch.models.secrets import SecretSyntaxError, parse_secret_ref


def _password_ref(text: str) -> SecretRef:
    try:
        ref = parse_secret_ref(text)
    except SecretSyntaxError as exc:
        # Never echo the value: it may be a password typed where a reference belongs.
        raise InputError([Problem(Location("--password-ref"), exc.message, exc.hint)]) from None
    if ref.kind is SecretKind.FILE:
        # A path on the command line is relative to the working directory.
        ref = SecretRef(SecretKind.FILE, os.path.normpath(Path(ref.target).expanduser().absolute()))
    return ref


def _report(result: ImportResult, output: Path, playbook: Path | None) -> None:
    for notice in result.notices:
        click.echo(f"warning: {notice}", err=True)
    for line in result.summary:
        click.echo(line)
    click.echo(f"wrote {output}")
    then = f"raorch validate -i {output}"
    if playbook is None:
        then += " --playbook PLAYBOOK"
    click.echo(f"next: review it (waves, gates, accounts), then `{then}`")


output_option = click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The raorch inventory to write.",
)
force_option = click.option("--force", is_flag=True, help="Replace --output if it exists.")
waves_option = click.option(
    "--waves",
    default=DEFAULT_WAVES,
    show_default=True,
    help="Waves to propose: NAME:P% or NAME:N each, the last a bare NAME (the rest).",
)
password_option = click.option(
    "--password-ref",
    default="env:RAORCH_PASSWORD",
    show_default=True,
    help="Where raorch reads the account's password: env:NAME, file:PATH, prompt or "
    "keyring:SERVICE (a second account gets NAME_2, ...).",
)
domain_option = click.option(
    "--domain",
    "domains",
    multiple=True,
    help="The hosts' domain (repeatable). Default: from the account names.",
)
playbook_option = click.option(
    "--playbook",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The playbook the inventory names (written relative to it).",
)


@click.group("inventory")
def inventory() -> None:
    """Write a raorch inventory from an Ansible inventory or from Active Directory."""


@inventory.command("from-ansible")
@click.argument("source", type=click.Path(path_type=Path))
@output_option
@force_option
@click.option(
    "--format", "fmt", type=click.Choice(["ini", "yaml"]), default=None, help="Default: guessed."
)
@click.option(
    "--connection",
    "assume_connection",
    type=click.Choice(["psrp", "winrm"]),
    default=None,
    help="For hosts without ansible_connection (else they are left out).",
)
@click.option("--group", "groups", multiple=True, help="Only the hosts of this group (repeatable).")
@click.option("--user", default=None, help="The account for hosts without ansible_user.")
@password_option
@domain_option
@click.option(
    "--keep-insecure",
    is_flag=True,
    help="Import cert validation 'ignore' and Basic over http as insecure: true.",
)
@waves_option
@playbook_option
@handle_errors
def from_ansible(
    source: Path,
    output: Path,
    force: bool,
    fmt: str | None,
    assume_connection: str | None,
    groups: tuple[str, ...],
    user: str | None,
    password_ref: str,
    domains: tuple[str, ...],
    keep_insecure: bool,
    waves: str,
    playbook: Path | None,
) -> None:
    """Import the WinRM hosts of an Ansible inventory (INI or YAML) as a raorch inventory.

    Passwords in the Ansible files are never copied: each account gets a reference. Exit 0
    when the file was written (warnings on stderr), 2 on bad input, 6 when --output exists.
    """
    if user is not None and (not user.strip() or user != user.strip()):
        raise InputError([Problem(Location("--user"), "an empty or padded account name", "")])
    options = AnsibleOptions(
        assume_connection=assume_connection,
        user=user,
        password_ref=_password_ref(password_ref),
        domains=tuple(domains),
        keep_insecure=keep_insecure,
        groups=tuple(groups),
        waves=parse_waves(waves),
        playbook=None if playbook is None else os.path.normpath(playbook.absolute()),
        fmt=fmt,
    )
    result = import_ansible(source, options)
    write_inventory(result.draft, output, force=force)
    _report(result, output, playbook)
