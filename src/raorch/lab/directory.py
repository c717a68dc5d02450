"""The emulated domain directory: which ``DOMAIN\\name`` accounts exist, and which domains trust
each other.

A host resolves an account the way ``NTAccount.Translate([SecurityIdentifier])`` does on
Windows (docs/windows.md, section 7): accounts of its own domain and of the domains it
trusts map to their SID; any other name raises IdentityNotMappedException (``NotMapped``);
a domain whose trust is marked broken fails with Win32 error 1789 (``TrustFailure``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_DOMAIN = "CORP"
DEFAULT_ACCOUNTS = ("CORP\\RA-Helpers", "CORP\\jdoe", "CORP\\Domain Admins", "PARTNER\\helpdesk")
# CORP trusts PARTNER; OTHER exists but nobody trusts it.
DEFAULT_TRUSTS: dict[str, tuple[str, ...]] = {"CORP": ("PARTNER",)}

# Characters Windows refuses in a user or group name (learn.microsoft.com, "Naming conventions
# in Active Directory": " / \ [ ] : ; | = , + * ? < > are not allowed in sAMAccountName).
_FORBIDDEN = set('"/\\[]:;|=,+*?<>')


class DirectoryError(ValueError):
    """A bad accounts file; the message names the file, the entry and what to do."""


def domain_sid(domain: str) -> str:
    """A stable domain SID ``S-1-5-21-a-b-c`` derived from the domain's name."""
    digest = hashlib.sha256(domain.upper().encode()).digest()
    parts = [int.from_bytes(digest[i : i + 4], "little") for i in (0, 4, 8)]
    return "S-1-5-21-" + "-".join(str(p) for p in parts)


def account_sid(account: str) -> str:
    """The SID the directory gives ``DOMAIN\\name``: RIDs of real domains start at 1000 for
    created principals; keep them stable by deriving from the name rather than from the order
    of the accounts file."""
    domain, _name = split_account(account)
    rid = 1000 + int.from_bytes(hashlib.sha256(account.upper().encode()).digest()[:3], "little")
    return f"{domain_sid(domain)}-{rid}"


def split_account(account: str) -> tuple[str, str]:
    domain, sep, name = account.partition("\\")
    if not sep or not domain or not name:
        raise DirectoryError(f"account {account!r} is not of the form DOMAIN\\name")
    return domain, name


@dataclass
class Directory:
    """Accounts by upper-cased ``DOMAIN\\NAME``; each keeps its spelling and a SID."""

    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (spelling, sid)
    trusts: dict[str, set[str]] = field(default_factory=dict)
    broken_trusts: set[str] = field(default_factory=set)  # domains whose trust fails (1789)

    def add(self, account: str) -> str:
        _domain, name = split_account(account)
        bad = sorted(set(name) & _FORBIDDEN)
        if bad:
            raise DirectoryError(
                f"account {account!r}: Windows does not allow {''.join(bad)!r} in a name"
            )
        key = account.upper()
        if key not in self.accounts:
            self.accounts[key] = (account, account_sid(account))
        return self.accounts[key][1]

    def trusts_domain(self, host_domain: str, account_domain: str) -> bool:
        h, a = host_domain.upper(), account_domain.upper()
        return h == a or a in {d.upper() for d in self.trusts.get(h, set())}

    def lookup(self, account: str) -> tuple[str, str] | None:
        """(spelling, sid) of an existing account, whatever the host; None if it does not exist."""
        return self.accounts.get(account.upper())

    def name_of_sid(self, sid: str) -> str | None:
        for spelling, s in self.accounts.values():
            if s == sid:
                return spelling
        return None


def default_directory(login_account: str, extra_accounts: list[str] | None = None) -> Directory:
    directory = Directory(trusts={k: set(v) for k, v in DEFAULT_TRUSTS.items()})
    for account in (*DEFAULT_ACCOUNTS, "OTHER\\stranger", login_account, *(extra_accounts or [])):
        directory.add(account)
    return directory


@dataclass(frozen=True, slots=True)
class AccountsFile:
    """An accounts file: every account (``names``), and those it marks as groups."""

    names: list[str]
    groups: list[str]


def read_accounts(path: Path) -> AccountsFile:
    """Read an accounts file: a YAML list whose entries are ``DOMAIN\\name`` strings (users)
    or ``{group: DOMAIN\\name}`` / ``{user: DOMAIN\\name}`` mappings. The emulated
    directory only needs the names; a domain lab creates users and groups as the file says."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DirectoryError(f"{path}: cannot read the accounts file: {exc}") from exc
    if not isinstance(data, list):
        raise DirectoryError(f"{path}: expected a YAML list of 'DOMAIN\\name' strings")
    out = AccountsFile([], [])
    for i, item in enumerate(data, start=1):
        kind = "user"
        if isinstance(item, dict) and len(item) == 1:
            [(kind, item)] = item.items()
            if kind not in ("user", "group"):
                raise DirectoryError(
                    f"{path}: entry {i}: unknown key {kind!r}; write {{group: 'DOMAIN\\name'}} "
                    "or {user: 'DOMAIN\\name'}"
                )
        if not isinstance(item, str):
            raise DirectoryError(f"{path}: entry {i} is not a string: {item!r}")
        try:
            split_account(item)
        except DirectoryError as exc:
            raise DirectoryError(f"{path}: entry {i}: {exc}; write it as DOMAIN\\name") from None
        out.names.append(item)
        if kind == "group":
            out.groups.append(item)
    return out


def load_accounts(path: Path) -> list[str]:
    """The accounts of an accounts file (``read_accounts``), users and groups alike."""
    return read_accounts(path).names
