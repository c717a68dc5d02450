"""Passwords for the command line: references resolved once per account, asked at the terminal
when the inventory says ``prompt`` (and only when there is a terminal to ask at); then the
run's Kerberos logon, before any host is contacted."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from raorch.cli.session import warn
from raorch.engine.dispatch import ControllerPasswords
from raorch.engine.paths import state_home
from raorch.models.inventory import ResolvedInventory, Target
from raorch.models.secrets import SecretResolver
from raorch.transport import kerberos


def _ask(username: str) -> str:
    return str(click.prompt(f"Password for {username}", hide_input=True, err=True))


def resolver() -> SecretResolver:
    return SecretResolver(prompt=_ask if sys.stdin.isatty() else None)


def credentials_for(inventory: ResolvedInventory, targets: Iterable[Target]) -> ControllerPasswords:
    """Each host's password ("" for none), resolved once per account; then, when a host uses
    Kerberos or Negotiate, raorch's krb5.conf (``defaults.kerberos``) and one Kerberos logon
    per account (``transport.kerberos.logon``): a wrong password, an expired ticket, a KDC out
    of reach or a clock off stop the command here (``KerberosLogonError``, exit 2), before
    any host is contacted or anything is recorded."""
    chosen = list(targets)
    passwords = ControllerPasswords(resolver(), chosen)
    if any(t.connection.auth.kerberos for t in chosen):
        kerberos.configure(inventory.kerberos, state_home())
        by_host = {t.name: passwords.password(t.credentials) for t in chosen}
        warn(kerberos.logon(chosen, by_host))
    return passwords
