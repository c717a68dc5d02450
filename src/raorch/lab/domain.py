"""The lab's real domain (``--directory samba``): a Samba AD DC that issues the tickets the
hosts accept and holds the accounts they resolve.

``LabDomain`` is what a running lab does with the DC: start it (or attach to one already
running, which tests share), create the accounts the fleet needs, make each host a domain
computer with its SPNs and keys (``SambaDC.register_hosts``), register those keys with the
process's Kerberos acceptor, and stop the DC with the lab.

``DomainDirectory`` is the directory the hosts see in such a lab: accounts of the DC's domain
(CORP) are looked up in the DC over LDAPS, as Windows' ``NTAccount.Translate`` asks a domain
controller (docs/windows.md, section 7): the real objectSid, user or group (objectClass),
disabled (userAccountControl bit ACCOUNTDISABLE, 0x2: a disabled account still translates, as
on Windows; ``account_info`` reports it), and an account the DC does not hold (never created,
or deleted) is not mapped. The trusted domains (PARTNER) and the untrusted one (OTHER) stay
emulated. Answers are cached per lab for ``ttl`` seconds, so that a fleet resolving the same
helpers asks the DC once per account, not once per host.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raorch.lab.directory import Directory, split_account
from raorch.lab.samba import (
    UAC_ACCOUNTDISABLE,
    HostAccount,
    RegisterResult,
    SambaDC,
    SambaError,
    ldap_connect,
    samba_available,
    sid_from_bytes,
    sid_to_bytes,
)

# How long a directory answer is reused. Short: a test (or an operator) that creates, disables
# or deletes an account sees the change within seconds; long enough that a rollout's hosts,
# which resolve the same helpers within seconds of each other, share one query per account.
DIRECTORY_TTL = 10.0
# The accounts a domain lab creates when missing, besides the login user and --accounts
# (docs/lab.md, "A real domain"): the playbook's helpers.
DEFAULT_GROUPS = {"RA-Helpers": ("jdoe",)}
DEFAULT_USERS = ("jdoe",)
# sAMAccountName of users and groups: at most 20 characters (learn.microsoft.com, "Naming
# conventions in Active Directory for computers, domains, sites, and OUs"; [MS-ADTS] 3.1.1.5.2.2).
MAX_ACCOUNT_NAME = 20


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """How a lab gets its domain (JSON-able: it travels to a child lab process).

    ``dc_dir``: the SambaDC's directory. ``start_dc``: the lab provisions it (once) and starts
    it, and stops it when the lab stops; False: the DC already runs (shared), the lab attaches
    to it and deletes the computer accounts it made when it stops. ``tag``: hosts of this lab
    are ``<host>.<tag>.<realm>`` with computer accounts ``<TAG>-<number>``, so that labs
    sharing one DC do not take each other's names ("" : ``<host>.<realm>``, ``LAB-0001``)."""

    dc_dir: str
    start_dc: bool = True
    tag: str = ""


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as the DC holds it."""

    account: str  # DOMAIN\\sAMAccountName, spelled as stored
    sid: str
    kind: str  # "user", "group" or "computer" (objectClass)
    disabled: bool  # userAccountControl & ACCOUNTDISABLE (groups: False)
    dn: str

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "sid": self.sid,
            "kind": self.kind,
            "disabled": self.disabled,
            "dn": self.dn,
        }


class DirectoryDown(RuntimeError):
    """The DC did not answer an LDAP query."""


class LdapAccounts:
    """Account lookups in the DC over LDAPS, cached for ``ttl`` seconds (hits and misses).

    ``queries`` counts the LDAP searches made (``raorch lab`` stats: ``ldap_queries``)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        base_dn: str,
        netbios: str,
        ttl: float = DIRECTORY_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.base_dn = base_dn
        self.netbios = netbios
        self.ttl = ttl
        self._clock = clock
        self._conn: Any = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._last_ok = -1e9
        self._last_failure = -1e9
        self.queries = 0
        self.hits = 0

    # ------------------------------------------------------------ public lookups

    def account(self, name: str) -> AccountInfo | None:
        """The account whose sAMAccountName is ``name`` (case-insensitive), or None."""
        found: AccountInfo | None = self._cached(
            ("name", name.upper()), lambda: self._find_name(name)
        )
        return found

    def by_sid(self, sid: str) -> AccountInfo | None:
        found: AccountInfo | None = self._cached(("sid", sid.upper()), lambda: self._find_sid(sid))
        return found

    def token_sids(self, name: str) -> frozenset[str]:
        """The SIDs a logon of ``name`` carries: its own and every group it is a member of,
        nested ones and its primary group included (the computed ``tokenGroups``); empty when
        the account does not exist."""
        result = self._cached(("token", name.upper()), lambda: self._token(name))
        return frozenset(result or ())

    def domain_sid(self) -> str | None:
        """The domain's SID (objectSid of the domain head)."""

        def find() -> str | None:
            entries = self._search(self.base_dn, "(objectClass=domain)", ["objectSid"], "BASE")
            return _sid(entries[0]) if entries else None

        result: str | None = self._cached(("domain", ""), find)
        return result

    def reachable(self) -> bool:
        """Whether the DC answers: the last query's outcome within ``ttl``, else a probe."""
        now = self._clock()
        if now - self._last_failure < self.ttl and self._last_failure > self._last_ok:
            return False
        if now - self._last_ok < self.ttl:
            return True
        try:
            self._search(self.base_dn, "(objectClass=domain)", ["objectClass"], "BASE")
        except DirectoryDown:
            return False
        return True

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.unbind()

    # ------------------------------------------------------------ internals

    def _cached(self, key: tuple[str, str], find: Callable[[], Any]) -> Any:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self.hits += 1
            return hit[1]
        value = find()
        self._cache[key] = (now + self.ttl, value)
        return value

    def _find_name(self, name: str) -> AccountInfo | None:
        from ldap3.utils.conv import escape_filter_chars

        entries = self._search(
            self.base_dn,
            f"(sAMAccountName={escape_filter_chars(name)})",
            ["sAMAccountName", "objectSid", "objectClass", "userAccountControl"],
        )
        return self._info(entries[0]) if entries else None

    def _find_sid(self, sid: str) -> AccountInfo | None:
        from ldap3.utils.conv import escape_bytes

        try:
            raw = sid_to_bytes(sid)
        except ValueError:
            return None
        entries = self._search(
            self.base_dn,
            f"(objectSid={escape_bytes(raw)})",
            ["sAMAccountName", "objectSid", "objectClass", "userAccountControl"],
        )
        return self._info(entries[0]) if entries else None

    def _token(self, name: str) -> tuple[str, ...] | None:
        info = self.account(name)
        if info is None:
            return None
        entries = self._search(info.dn, "(objectClass=*)", ["tokenGroups"], "BASE")
        groups = entries[0]["raw_attributes"].get("tokenGroups", []) if entries else []
        return (info.sid, *(sid_from_bytes(bytes(g)) for g in groups))

    def _info(self, entry: dict[str, Any]) -> AccountInfo:
        attrs = entry["attributes"]
        classes = {str(c).lower() for c in attrs.get("objectClass", [])}
        kind = "computer" if "computer" in classes else "group" if "group" in classes else "user"
        uac = attrs.get("userAccountControl")
        uac_value = int(uac[0] if isinstance(uac, list) and uac else uac or 0)
        name = attrs.get("sAMAccountName")
        sam = str(name[0] if isinstance(name, list) else name)
        return AccountInfo(
            account=f"{self.netbios}\\{sam}",
            sid=_sid(entry),
            kind=kind,
            disabled=bool(uac_value & UAC_ACCOUNTDISABLE) and kind != "group",
            dn=str(entry["dn"]),
        )

    def _search(
        self, base: str, query: str, attributes: list[str], scope: str = "SUBTREE"
    ) -> list[dict[str, Any]]:
        """One LDAP search (reconnecting once if the connection dropped)."""
        from ldap3.core.exceptions import LDAPException

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    self.queries += 1
                    self._conn.search(base, query, scope, attributes=attributes)
                    entries = [e for e in self._conn.response if e.get("type") == "searchResEntry"]
                    self._last_ok = self._clock()
                    return entries
                except (LDAPException, SambaError, OSError) as exc:
                    with contextlib.suppress(Exception):
                        if self._conn is not None:
                            self._conn.unbind()
                    self._conn = None
                    if attempt == 2:
                        self._last_failure = self._clock()
                        raise DirectoryDown(str(exc)) from None
        raise AssertionError("unreachable")


def _sid(entry: dict[str, Any]) -> str:
    raw = entry["raw_attributes"]["objectSid"][0]
    return sid_from_bytes(bytes(raw))


class DomainDirectory(Directory):
    """The emulated ``Directory``, with the accounts of the DC's domain looked up in the DC.

    A DC that does not answer makes the domain's trust fail (1789, ``TrustFailure``): the host
    cannot reach a domain controller of its domain. That Windows reports exactly this error
    then is UNCONFIRMED (the lab's choice; ``NotMapped`` would refuse the host the same way)."""

    def __init__(self, base: Directory, ldap: LdapAccounts) -> None:
        super().__init__(accounts=base.accounts, trusts=base.trusts)
        self.ldap = ldap
        self.netbios = ldap.netbios.upper()

    # ``broken_trusts`` is assigned by the lab (faults file) and read by every lookup.
    @property
    def broken_trusts(self) -> set[str]:
        broken = set(self._broken)
        if not self.ldap.reachable():
            broken.add(self.netbios)
        return broken

    @broken_trusts.setter
    def broken_trusts(self, value: set[str]) -> None:
        self._broken = set(value)

    def _ours(self, account: str) -> str | None:
        domain, name = split_account(account)
        return name if domain.upper() == self.netbios else None

    def lookup(self, account: str) -> tuple[str, str] | None:
        name = self._ours(account)
        if name is None:
            return super().lookup(account)
        try:
            info = self.ldap.account(name)
        except DirectoryDown:
            return None
        return (info.account, info.sid) if info is not None else None

    def name_of_sid(self, sid: str) -> str | None:
        try:
            info = self.ldap.by_sid(sid)
        except DirectoryDown:
            info = None
        if info is not None:
            return info.account
        return super().name_of_sid(sid)

    def account_info(self, account: str) -> AccountInfo | None:
        """What the DC holds for ``account`` (None: not a domain account, or none such)."""
        name = self._ours(account)
        return self.ldap.account(name) if name is not None else None

    def token_sids(self, account: str) -> frozenset[str]:
        name = self._ours(account)
        if name is None:
            return frozenset()
        try:
            return self.ldap.token_sids(name)
        except DirectoryDown:
            return frozenset()

    def domain_sid_of(self, domain: str) -> str | None:
        if domain.upper() == self.netbios:
            with contextlib.suppress(DirectoryDown):
                return self.ldap.domain_sid()
        return None


@dataclass(frozen=True, slots=True)
class DomainAccounts:
    """What the lab creates in the domain (sAMAccountNames, without the domain)."""

    users: tuple[str, ...]
    groups: tuple[str, ...]


def domain_accounts(netbios: str, accounts: Iterable[str], groups: Iterable[str]) -> DomainAccounts:
    """The accounts of ``netbios`` to create: the defaults (jdoe, RA-Helpers) and those of
    the accounts file in that domain, groups as the file says (``{group: ...}`` entries)."""
    group_names = {g.upper() for g in groups}
    users = list(DEFAULT_USERS)
    made_groups = list(DEFAULT_GROUPS)
    for account in accounts:
        domain, name = split_account(account)
        if domain.upper() != netbios.upper():
            continue
        if len(name) > MAX_ACCOUNT_NAME:
            raise SambaError(
                f"account {account!r}: a domain account's name (sAMAccountName) has at most "
                f"{MAX_ACCOUNT_NAME} characters"
            )
        target = made_groups if account.upper() in group_names else users
        if name.upper() not in {n.upper() for n in (*users, *made_groups)}:
            target.append(name)
    return DomainAccounts(tuple(users), tuple(made_groups))


def computer_account(host: str, tag: str = "") -> str:
    """A lab host's computer account name (sAMAccountName without ``$``): ``LAB-0001``, or
    ``<TAG>-0001`` for a lab with a tag (a shared DC); at most 15 characters (NetBIOS)."""
    number = host.rpartition("-")[2]
    return (f"{tag}-{number}" if tag else host).upper()


class LabDomain:
    """The domain of one running lab (see the module's docstring)."""

    def __init__(self, config: DomainConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.dc = SambaDC(Path(config.dc_dir))
        self.keytab = state_dir / "domain" / "hosts.keytab"
        self.hosts: list[HostAccount] = []
        self.registered: RegisterResult | None = None
        self._started = False

    @property
    def realm(self) -> str:
        return self.dc.realm

    @property
    def netbios(self) -> str:
        return self.dc.domain

    @property
    def dns_domain(self) -> str:
        base = self.realm.lower()
        return f"{self.config.tag}.{base}" if self.config.tag else base

    def host_account(self, host: str) -> HostAccount:
        account = computer_account(host, self.config.tag)
        return HostAccount(host, account, f"{host}.{self.dns_domain}".lower())

    def open(self) -> None:
        """Start the DC (``start_dc``; provisioned on first use) or attach to the running one;
        point this process's Kerberos library at its krb5.conf."""
        missing = samba_available()
        if missing:
            raise SambaError(missing)
        directory = Path(self.config.dc_dir)
        if self.config.start_dc:
            if self.dc.provisioned:
                self.dc = SambaDC.attach(directory)
            self.dc.start()
            self._started = True
        else:
            self.dc = SambaDC.attach(directory)
            if not SambaDC.listening():
                raise SambaError(
                    f"no domain controller listens on 127.0.0.1 (the one in {directory} is "
                    "not running): start it first"
                )
        os.environ["KRB5_CONFIG"] = str(self.dc.krb5_conf)

    def populate(self, login: str, password: str, accounts: DomainAccounts) -> None:
        """Create what is missing: the users (the login user with the lab's password and in
        Domain Admins, as a domain's administrators are; others, when created, with the lab's
        password too), the groups, jdoe in RA-Helpers. Existing accounts keep their password
        (a shared DC's jdoe belongs to its creator), except the login user's."""
        domain, name = split_account(login)
        if domain.upper() != self.netbios.upper():
            raise SambaError(
                f"the login user {login!r} is not of the domain {self.netbios}: a domain lab "
                f"logs in with a domain account, e.g. '{self.netbios}\\labadmin'"
            )
        self.dc.ensure_user(name, password, admin=True)
        for user in accounts.users:
            if self.dc.find(user) is None:
                self.dc.ensure_user(user, password)
        for group in accounts.groups:
            self.dc.ensure_group(group, DEFAULT_GROUPS.get(group, ()))

    def register(self, hosts: Iterable[str]) -> RegisterResult:
        """Every host a domain computer with its keys in the state directory's keytab, added
        to the process's acceptor keytab (auth.register_keytab)."""
        from raorch.lab.auth import register_keytab

        self.hosts = [self.host_account(h) for h in hosts]
        self.keytab.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keytab.parent, 0o700)
        self.registered = self.dc.register_hosts(self.hosts, self.keytab)
        os.chmod(self.keytab, 0o600)
        register_keytab(self.keytab)
        return self.registered

    def directory(self, base: Directory, login: str, password: str) -> DomainDirectory:
        """The hosts' directory: lookups bind to the DC as the login user (a domain user may
        read the directory), over LDAPS."""
        _domain, name = split_account(login)
        dc = self.dc

        def connect() -> Any:
            return ldap_connect(dc, f"{name}@{dc.realm}", password)

        return DomainDirectory(base, LdapAccounts(connect, dc.base_dn, self.netbios))

    def close(self) -> None:
        """Stop the DC this lab started; on a shared DC, delete this lab's computer accounts
        (their names are this lab's own: nobody else uses them)."""
        try:
            if not self.config.start_dc and self.config.tag and self.hosts:
                with contextlib.suppress(SambaError, OSError):
                    self.dc.unregister_hosts(self.hosts)
        finally:
            self.dc.close_ldap()
            if self._started:
                self.dc.stop()
                self._started = False

    def to_json(self) -> dict[str, Any]:
        return {
            "realm": self.realm,
            "netbios": self.netbios,
            "dns_domain": self.dns_domain,
            "tag": self.config.tag,
            "kdc": "127.0.0.1",
            "krb5_conf": str(self.dc.krb5_conf),
            "dc_dir": str(self.dc.directory),
            "own_dc": self.config.start_dc,
        }
