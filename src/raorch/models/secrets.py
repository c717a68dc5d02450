"""Password references: parsing them (at load time) and resolving them (when connecting).

An inventory never holds a password, only where to find one:

- ``env:NAME``        the environment variable NAME
- ``file:PATH``       the file's content, less one trailing newline; the file must be readable by
                      its owner only (mode 0600 or 0400), like ssh refuses loose private keys
- ``prompt``          ask the operator, once per distinct account, through a callable the
                      interface injects (the library never prints or reads the terminal)
- ``keyring:SERVICE`` the system keyring (optional extra: ``pip install 'raorch[keyring]'``)

The references and their syntax are ``raorch.models.secretref`` (a leaf the inventory's model
imports). No message raised here ever contains a password.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from raorch.models.errors import RaorchError
from raorch.models.inventory import Credentials
from raorch.models.secretref import SecretKind, SecretRef

# Given the account (DOMAIN\name), returns its password. Supplied by the CLI; None when not
# interactive.
PromptFn = Callable[[str], str]


class SecretError(RaorchError):
    """A well-formed reference could not produce a password (unset variable, loose file...)."""


def read_secret_file(path: Path) -> str:
    """Read a password file, refusing files that others than the owner may read or write."""
    # O_NONBLOCK: a FIFO in place of the file must not hang the run; it is refused below.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SecretError(
            f"password file {path} does not exist", "create it (mode 0600) or fix the reference"
        ) from None
    except OSError as exc:
        raise SecretError(
            f"cannot read password file {path}: {exc.strerror}",
            "make it readable by the user running raorch (mode 0600)",
        ) from None
    try:
        # fstat on the open descriptor: the file checked is the file read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"password file {path} is not a regular file", "point at a file")
        # POSIX only: Windows has no mode bits worth checking (ACLs instead).
        if os.name == "posix" and info.st_mode & 0o077:
            raise SecretError(
                f"password file {path} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                f"restrict it to its owner: chmod 600 {path}",
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"password file {path} is not UTF-8 text", "save it as UTF-8") from None
    # One trailing newline is how editors and `echo` end a file; it is not part of the password.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise SecretError(f"password file {path} is empty", "write the password into it")
    return text


class SecretResolver:
    """Turns ``Credentials`` into passwords, each reference resolved at most once.

    ``prompt`` is asked once per distinct account (a fleet shares one service account; nobody
    wants a thousand prompts). ``environ`` defaults to ``os.environ``.
    """

    def __init__(
        self,
        prompt: PromptFn | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._prompt = prompt
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._cache: dict[tuple[str, SecretRef], str] = {}

    def password(self, credentials: Credentials | None) -> str:
        """The password of ``credentials``; "" for a host without any (``auth: certificate``,
        or Kerberos from the operator's ticket cache)."""
        if credentials is None or credentials.password is None:
            return ""
        key = (credentials.username.casefold(), credentials.password)
        if key not in self._cache:
            self._cache[key] = self._resolve(credentials.username, credentials.password)
        return self._cache[key]

    def _resolve(self, username: str, ref: SecretRef) -> str:
        if ref.kind is SecretKind.ENV:
            value = self._environ.get(ref.target)
            if not value:
                raise SecretError(
                    f"password for {username}: environment variable {ref.target} is not set"
                    + (" (it is empty)" if value == "" else ""),
                    f"export {ref.target} before running raorch, or change the reference",
                )
            return value
        if ref.kind is SecretKind.FILE:
            return read_secret_file(Path(ref.target))
        if ref.kind is SecretKind.PROMPT:
            if self._prompt is None:
                raise SecretError(
                    f"password for {username} is 'prompt' but raorch cannot ask (not interactive)",
                    "run it in a terminal, or use env:NAME or file:PATH",
                )
            value = self._prompt(username)
            if not value:
                raise SecretError(f"no password given for {username}", "enter the password")
            return value
        return _from_keyring(ref.target, username)


def _from_keyring(service: str, username: str) -> str:
    try:
        # Optional dependency, imported only when a reference asks for it.
        keyring: Any = importlib.import_module("keyring")
    except ImportError:
        raise SecretError(
            f"password for {username} is in keyring:{service} but the keyring package is missing",
            "pip install 'raorch[keyring]', or use env:NAME or file:PATH",
        ) from None
    try:
        value = keyring.get_password(service, username)
    except Exception as exc:  # keyring backends raise their own types; the message is enough
        raise SecretError(
            f"keyring:{service}: cannot read the password for {username} ({type(exc).__name__})",
            "check that a keyring backend is available and unlocked",
        ) from None
    if not value:
        raise SecretError(
            f"keyring:{service} has no password for {username}",
            f"store it: keyring set {service} '{username}'",
        )
    return str(value)


def resolve_password(
    credentials: Credentials,
    prompt: PromptFn | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """One-off resolution; use a shared ``SecretResolver`` to prompt only once per account."""
    return SecretResolver(prompt, environ).password(credentials)
