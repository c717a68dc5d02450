"""Passwords for the command line: references resolved once per account, asked at the terminal
when the inventory says ``prompt`` (and only when there is a terminal to ask at)."""

from __future__ import annotations

import sys

import click

from raorch.models.secrets import SecretResolver


def _ask(username: str) -> str:
    return str(click.prompt(f"Password for {username}", hide_input=True, err=True))


def resolver() -> SecretResolver:
    return SecretResolver(prompt=_ask if sys.stdin.isatty() else None)
