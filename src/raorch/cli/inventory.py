"""`raorch inventory from-ansible | from-ad`: write a raorch inventory from where a fleet is
already described (docs/inventory.md, "Importing an inventory").

Thin: the importers (``raorch.importers``) read the source into a draft and the writer checks
and writes it; this prints the warnings (stderr), the summary and what to run next.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import click

from raorch.cli.credentials import resolver
from raorch.cli.errors import handle_errors
from raorch.importers.ad import DEFAULT_FILTER, DEFAULT_STALE_DAYS, AdOptions, build_draft
from raorch.importers.ad_ldap import Bind, LdapOptions, read_computers
from raorch.importers.ansible import AnsibleOptions, import_ansible
from raorch.importers.draft import ImportResult
from raorch.importers.waves import DEFAULT_WAVES, parse_waves
from raorch.importers.writer import write_inventory
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import AuthMethod, Credentials, Scheme, SecretKind, SecretRef
from raorch.models.load import pem_problem
from raorch.models.secretref import SecretSyntaxError, parse_secret_ref


def _password_ref(text: str, option: str = "--password-ref") -> SecretRef:
    try:
        ref = parse_secret_ref(text)
    except SecretSyntaxError as exc:
        # Never echo the value: it may be a password typed where a reference belongs.
        raise InputError([Problem(Location(option), exc.message, exc.hint)]) from None
    if ref.kind is SecretKind.FILE:
        # A path on the command line is relative to the working directory.
        ref = SecretRef(SecretKind.FILE, os.path.normpath(Path(ref.target).expanduser().absolute()))
    return ref


def _warn(result: ImportResult) -> None:
    """The warnings, before the file is written (also when it then cannot be)."""
    for notice in result.notices:
        click.echo(f"warning: {notice}", err=True)


def _report(result: ImportResult, output: Path, playbook: Path | None) -> None:
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
    help="The hosts' domain (repeatable). Default: from the accounts (Ansible), the base DN (AD).",
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


def _pem(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    absolute = os.path.normpath(path.expanduser().absolute())
    problem = pem_problem(Path(absolute), "CERTIFICATE")
    if problem is not None:
        raise InputError(
            [Problem(Location(option), f"{absolute}: {problem}", "give a PEM file with the CA")]
        )
    return absolute


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
    _warn(result)
    write_inventory(result.draft, output, force=force)
    _report(result, output, playbook)


@inventory.command("from-ad")
@click.option("--server", required=True, help="ldaps://dc1.corp.example.com, or ldap://...")
@click.option(
    "--bind",
    type=click.Choice([b.value for b in Bind]),
    default=Bind.KERBEROS.value,
    show_default=True,
    help="kerberos: your ticket (kinit); simple: --bind-user and --bind-password-ref, over TLS.",
)
@click.option("--bind-user", default=None, help="The simple bind's account (DOMAIN\\name).")
@click.option(
    "--bind-password-ref",
    default=None,
    help="Where the simple bind's password is: env:NAME, file:PATH, prompt, keyring:SERVICE.",
)
@click.option("--start-tls", is_flag=True, help="TLS on ldap:// (StartTLS).")
@click.option(
    "--ldap-ca",
    type=click.Path(path_type=Path),
    default=None,
    help="The CA of the DC's certificate (default: the system's).",
)
@click.option(
    "--server-name",
    default=None,
    help="The DC's DNS name when --server is an address: checked in its certificate, and "
    "its Kerberos service (ldap/NAME).",
)
@click.option(
    "--insecure-plain-ldap",
    is_flag=True,
    help="Allow a simple bind, or an unsealed Kerberos bind, over ldap:// without TLS.",
)
@click.option("--base-dn", default=None, help="Where to search. Default: the whole domain.")
@click.option("--filter", "search_filter", default=DEFAULT_FILTER, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 1000), default=500, show_default=True)
@click.option(
    "--stale-days",
    type=click.IntRange(min=0),
    default=DEFAULT_STALE_DAYS,
    show_default=True,
    help="Leave out computers with no logon for this many days (0: keep them).",
)
@output_option
@force_option
@click.option("--user", default=None, help="The account raorch connects to the hosts with.")
@password_option
@click.option("--scheme", type=click.Choice(["https", "http"]), default="https", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: 5986 / 5985.")
@click.option(
    "--auth",
    # Not basic (a password in clear over http, or a domain account Windows refuses Basic
    # for), not certificate (a client certificate per host is not in the directory).
    type=click.Choice(
        [a.value for a in AuthMethod if a not in (AuthMethod.BASIC, AuthMethod.CERTIFICATE)]
    ),
    default=AuthMethod.KERBEROS.value,
    show_default=True,
)
@click.option(
    "--winrm-ca",
    type=click.Path(path_type=Path),
    default=None,
    help="The CA of the hosts' WinRM certificates (default: the system's).",
)
@domain_option
@waves_option
@playbook_option
@handle_errors
def from_ad(
    server: str,
    bind: str,
    bind_user: str | None,
    bind_password_ref: str | None,
    start_tls: bool,
    ldap_ca: Path | None,
    server_name: str | None,
    insecure_plain_ldap: bool,
    base_dn: str | None,
    search_filter: str,
    page_size: int,
    stale_days: int,
    output: Path,
    force: bool,
    user: str | None,
    password_ref: str,
    scheme: str,
    port: int | None,
    auth: str,
    winrm_ca: Path | None,
    domains: tuple[str, ...],
    waves: str,
    playbook: Path | None,
) -> None:
    """Import the computer objects of Active Directory (LDAP) as a raorch inventory.

    Disabled, stale (--stale-days) and domain controller accounts are left out and counted;
    the OU path is the host's groups. Exit 0 when the file was written, 2 on bad options or a
    base DN that does not exist, 6 when --output exists, 7 when the directory cannot be
    reached or refuses the bind.
    """
    shares = parse_waves(waves)
    options = AdOptions(
        user=user,
        password_ref=_password_ref(password_ref),
        scheme=Scheme(scheme),
        port=port,
        auth=AuthMethod(auth),
        ca_bundle=_pem(winrm_ca, "--winrm-ca"),
        domains=tuple(domains),
        stale_days=stale_days or None,
        waves=shares,
        playbook=None if playbook is None else os.path.normpath(playbook.absolute()),
    )
    options.check()
    password = None
    if Bind(bind) is Bind.SIMPLE and bind_user and bind_password_ref:
        ref = _password_ref(bind_password_ref, "--bind-password-ref")
        password = resolver().password(Credentials(bind_user, ref))
    directory = read_computers(
        LdapOptions(
            server=server,
            bind=Bind(bind),
            user=bind_user,
            password=password,
            start_tls=start_tls,
            ca_bundle=_pem(ldap_ca, "--ldap-ca"),
            server_name=server_name,
            insecure_plain_ldap=insecure_plain_ldap,
            base_dn=base_dn,
            search_filter=search_filter,
            page_size=page_size,
        )
    )
    now = datetime.datetime.now(datetime.UTC)
    result = build_draft(directory.computers, directory.base_dn, directory.server, options, now)
    _warn(result)
    write_inventory(result.draft, output, force=force)
    click.echo(
        f"directory: {directory.server}, base {directory.base_dn}, "
        f"protected by {directory.protection}"
    )
    _report(result, output, playbook)
