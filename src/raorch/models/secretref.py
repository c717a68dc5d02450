"""Password references and their syntax: what an inventory says about a password.

A leaf: it imports nothing of raorch, so that the inventory's model (which checks the syntax
when it loads) and the resolver (``raorch.models.secrets``, which reads the password when the
engine connects) both build on it without importing each other.

- ``env:NAME``        the environment variable NAME
- ``file:PATH``       a file readable by its owner only
- ``prompt``          ask the operator, once per distinct account
- ``keyring:SERVICE`` the system keyring
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

REFERENCE_FORMS = "env:NAME, file:PATH, prompt or keyring:SERVICE"

# POSIX-portable environment variable names (IEEE Std 1003.1, 8.1), which is also what a shell
# can export.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SecretKind(StrEnum):
    ENV = "env"
    FILE = "file"
    PROMPT = "prompt"
    KEYRING = "keyring"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a password comes from; never the password itself.

    ``env:NAME``, ``file:PATH`` (owner-only permissions), ``prompt``, ``keyring:SERVICE``.
    """

    kind: SecretKind
    target: str = ""

    def __str__(self) -> str:
        return self.kind.value if self.kind is SecretKind.PROMPT else f"{self.kind}:{self.target}"


class SecretSyntaxError(ValueError):
    """A password reference is not one of the accepted forms. Raised at load time."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_secret_ref(text: str) -> SecretRef:
    """Parse a reference. ``file:`` paths are returned as written (the loader anchors relative
    ones at the inventory's directory). Never echoes ``text``: it may be a literal password."""
    kind, sep, target = text.partition(":")
    if text == "prompt":
        return SecretRef(SecretKind.PROMPT)
    if sep and kind == "env":
        if not _ENV_NAME.match(target):
            raise SecretSyntaxError(
                "env: needs an environment variable name",
                "write env:NAME, NAME made of letters, digits and _ (not starting with a digit)",
            )
        return SecretRef(SecretKind.ENV, target)
    if sep and kind == "file":
        if not target or "\x00" in target:
            raise SecretSyntaxError("file: needs a path", "write file:PATH, e.g. file:secrets/pw")
        return SecretRef(SecretKind.FILE, target)
    if sep and kind == "keyring":
        if not target.strip():
            raise SecretSyntaxError(
                "keyring: needs a service name", "write keyring:SERVICE, e.g. keyring:raorch"
            )
        return SecretRef(SecretKind.KEYRING, target)
    raise SecretSyntaxError(
        "a password must be a reference, not a literal password "
        "(an inventory is shared and committed; a password in it leaks)",
        f"write one of {REFERENCE_FORMS}, e.g. password: env:RAORCH_PASSWORD",
    )
