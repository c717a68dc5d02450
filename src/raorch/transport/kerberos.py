"""Kerberos for WinRM sessions: the principal of an account, raorch's own krb5.conf, one
logon per account for a whole run, and what each Kerberos failure means.

A WinRM client asks the KDC for a ticket to the service principal ``HTTP/<host>``
(learn.microsoft.com, "New-PSSessionOption", -IncludePortInSPN: the SPN "used for Kerberos
authentication", ``HTTP/<ComputerName>``); pypsrp 0.9 would ask for ``host/<host>`` unless told
(``negotiate_service``). The host name is the address, or ``connection.spn_host`` for a host
addressed by IP or by an alias.

One logon per account and run (``logon``): with a password, raorch asks the KDC for the
account's ticket-granting ticket once, into a private in-memory ticket cache of this process,
and every host session of the run uses that ticket. A wrong password is then tried once, not
once per host: Active Directory counts every failed pre-authentication against the account's
lockout threshold (learn.microsoft.com, "Account lockout threshold"), so a thousand hosts
would lock the account after a handful. Without a password, the operator's ticket cache
(``KRB5CCNAME``, else the system default) is used and checked once. The logon also asks for one
service ticket (the first host's), so that a KDC that cannot be reached or a clock that is off
stops the run before the first host, instead of failing every host the same way.

The gssapi and krb5 bindings (``pip install 'raorch[kerberos]'``) are imported only when a
Kerberos account is used: NTLM-only installations do not need them.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from raorch.models.errors import ExitCode, RaorchError
from raorch.models.inventory import AuthMethod, KerberosRealm, Target

# WinRM's SPN service class (see the module docstring).
SERVICE = "HTTP"

# The Kerberos object identifier (RFC 4121, section 1).
_KRB5_MECH = "1.2.840.113554.1.2.2"

# A ticket-granting ticket with less than this left is asked for again (AD's default lifetime
# is 10 hours, learn.microsoft.com "Maximum lifetime for user ticket"; a run may be longer).
_RENEW_BEFORE = 300


class KerberosProblem(StrEnum):
    """What went wrong, as an operator fixes it."""

    NO_KERBEROS = "kerberos-missing"  # the gssapi / krb5 bindings are not installed
    KDC_UNREACHABLE = "kdc-unreachable"
    WRONG_REALM = "wrong-realm"  # no KDC is known for the realm
    UNKNOWN_ACCOUNT = "unknown-account"
    CLOCK_SKEW = "clock-skew"
    PASSWORD_EXPIRED = "password-expired"
    WRONG_PASSWORD = "wrong-password"
    ACCOUNT_REVOKED = "account-revoked"  # disabled, expired or locked out
    NO_TICKET = "no-ticket"  # no ticket in the cache, and no password to get one
    TICKET_EXPIRED = "ticket-expired"
    UNKNOWN_SPN = "unknown-spn"
    OTHER = "other"

    @property
    def ntlm_fails_too(self) -> bool:
        """The account itself was refused: NTLM, which checks the same password at the same
        domain controller, would be refused too (and count against the lockout threshold)."""
        return self in (
            KerberosProblem.WRONG_PASSWORD,
            KerberosProblem.PASSWORD_EXPIRED,
            KerberosProblem.ACCOUNT_REVOKED,
        )


# MIT Kerberos error codes (src/lib/krb5/error_tables/krb5_err.et: the table's base
# -1765328384 plus the RFC 4120 section 7.5.9 protocol error number, or MIT's own codes after
# 128). krb5.Krb5Error carries them signed; gssapi's minor codes carry them unsigned.
_CODES: dict[int, KerberosProblem] = {
    -1765328383: KerberosProblem.ACCOUNT_REVOKED,  # KDC_ERR_NAME_EXP (1): account expired
    -1765328378: KerberosProblem.UNKNOWN_ACCOUNT,  # KDC_ERR_C_PRINCIPAL_UNKNOWN (6)
    -1765328377: KerberosProblem.UNKNOWN_SPN,  # KDC_ERR_S_PRINCIPAL_UNKNOWN (7)
    -1765328366: KerberosProblem.ACCOUNT_REVOKED,  # KDC_ERR_CLIENT_REVOKED (18)
    -1765328361: KerberosProblem.PASSWORD_EXPIRED,  # KDC_ERR_KEY_EXPIRED (23)
    -1765328360: KerberosProblem.WRONG_PASSWORD,  # KDC_ERR_PREAUTH_FAILED (24)
    -1765328353: KerberosProblem.WRONG_PASSWORD,  # KRB_AP_ERR_BAD_INTEGRITY (31): the reply
    # of a KDC that did not ask for pre-authentication does not decrypt with the password
    -1765328352: KerberosProblem.TICKET_EXPIRED,  # KRB_AP_ERR_TKT_EXPIRED (32)
    -1765328347: KerberosProblem.CLOCK_SKEW,  # KRB_AP_ERR_SKEW (37)
    -1765328316: KerberosProblem.WRONG_REALM,  # KDC_ERR_WRONG_REALM (68)
    -1765328243: KerberosProblem.NO_TICKET,  # KRB5_CC_NOTFOUND
    -1765328230: KerberosProblem.WRONG_REALM,  # KRB5_REALM_UNKNOWN: no KDC known for it
    -1765328228: KerberosProblem.KDC_UNREACHABLE,  # KRB5_KDC_UNREACH
    -1765328189: KerberosProblem.NO_TICKET,  # KRB5_FCC_NOFILE: no ticket cache file
}

# GSS-API major status of an expired credential (RFC 2744, GSS_S_CREDENTIALS_EXPIRED).
_GSS_S_CREDENTIALS_EXPIRED = 11 << 16
_GSS_S_NO_CRED = 7 << 16


@dataclass(frozen=True, slots=True)
class KerberosFailure:
    """A Kerberos failure, classified. ``detail`` is the library's text (principal and realm
    names, never a password: Kerberos libraries never print one)."""

    problem: KerberosProblem
    detail: str
    code: int | None = None


class KerberosError(Exception):
    """Getting a ticket failed (raised in a host session; ``classify`` makes it a
    ``TransportError``)."""

    def __init__(self, failure: KerberosFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class KerberosLogonError(RaorchError):
    """The run's Kerberos logon failed: no host was contacted (exit 2, like a password that
    cannot be read)."""

    exit_code = ExitCode.INVALID_INPUT


# ---------------------------------------------------------------- names


def principal_for(username: str, realm: str | None) -> str:
    """The Kerberos principal of an inventory user name.

    ``DOMAIN\\user`` becomes ``user@REALM``: the NetBIOS domain name says nothing about the
    realm (an Active Directory realm is the domain's DNS name in capitals), so REALM is
    ``defaults.kerberos.realm``, and without it the krb5 configuration's ``default_realm``
    (the name is given without a realm). ``user@domain`` keeps its user part and gets its
    realm in capitals (MIT Kerberos compares realms case-sensitively, Windows does not).
    """
    if "\\" in username:
        username = username.split("\\", 1)[1]
    user, at, domain = username.rpartition("@")
    if at:
        return f"{user}@{domain.upper()}"
    return f"{username}@{realm}" if realm else username


def spn_of(target: Target) -> str:
    return f"{SERVICE}/{target.spn_host}"


def _is_ip(name: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", name)) or ":" in name


def computer_account(target: Target) -> str:
    """The computer account a host's SPN belongs on (``setspn -S SPN COMPUTER$``): the first
    label of its name, in capitals; a placeholder for a host known only by address."""
    name = target.connection.spn_host or target.address
    if _is_ip(name):
        return "COMPUTER$"
    return name.split(".", 1)[0].upper() + "$"


# ---------------------------------------------------------------- raorch's krb5.conf

_state_lock = threading.Lock()
_realm: KerberosRealm | None = None
_config: Path | None = None


def krb5_conf_text(settings: KerberosRealm) -> str:
    """A krb5.conf naming the inventory's realm and KDC.

    The realm's section is final (``}*``, krb5.conf(5), "final" flag): files read after this
    one, the operator's, may add nothing to it, so the inventory's KDC is the only one tried.
    No DNS: the KDC is the one named; the SPN is built from the name given, not from a DNS
    canonicalization or a reverse lookup of the address (``spn_host`` says the name)."""
    return (
        "# Written by raorch from the inventory's defaults.kerberos; rewritten at every run.\n"
        "[libdefaults]\n"
        f"    default_realm = {settings.realm}\n"
        "    dns_lookup_kdc = false\n"
        "    dns_lookup_realm = false\n"
        "    dns_canonicalize_hostname = false\n"
        "    rdns = false\n"
        "[realms]\n"
        f"    {settings.realm} = {{\n"
        f"        kdc = {settings.kdc_host}:{settings.kdc_port}\n"
        "    }*\n"
    )


def configure(
    settings: KerberosRealm | None,
    state_dir: Path,
    environ: dict[str, str] | None = None,
) -> Path | None:
    """Use the inventory's realm and KDC for this process (before any Kerberos call).

    With ``defaults.kerberos``: writes ``state_dir/kerberos/krb5-<digest>.conf`` (directory
    0700, file 0600) and puts it first in ``KRB5_CONFIG``, before what ``KRB5_CONFIG`` named
    (or ``/etc/krb5.conf``): the inventory's realm, KDC and default realm win, the operator's
    files still give everything else (other realms, encryption types, the ticket cache type).
    MIT Kerberos reads ``KRB5_CONFIG`` whenever it makes a context, so setting it here, before
    the first ticket, is enough. Without ``defaults.kerberos`` nothing changes: the system's
    configuration is used. Returns the file written, or None."""
    global _realm, _config
    env: Any = os.environ if environ is None else environ
    with _state_lock:
        _realm = settings
        if settings is None:
            return None
        text = krb5_conf_text(settings)
        directory = state_dir / "kerberos"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        path = directory / f"krb5-{hashlib.sha256(text.encode()).hexdigest()[:12]}.conf"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        tmp.replace(path)
        previous = [p for p in (env.get("KRB5_CONFIG") or "/etc/krb5.conf").split(":") if p]
        env["KRB5_CONFIG"] = ":".join([str(path), *(p for p in previous if p != str(path))])
        _config = path
        return path


def configured_realm() -> KerberosRealm | None:
    return _realm


# ---------------------------------------------------------------- failures


def _signed(code: int) -> int:
    return code - (1 << 32) if code >= 1 << 31 else code


def _minor_text(text: str) -> str:
    # gssapi: "Major (851968): Unspecified GSS failure. ..., Minor (2529638919): Server not
    # found in Kerberos database": the minor part is the useful one.
    match = re.search(r"Minor \(\d+\): (.*?)(?:, Context: .*)?$", text)
    return (match.group(1) if match else text).strip()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (
            getattr(current, "base_error", None),
            current.__cause__,
            current.__context__,
        ):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def failure_of(exc: BaseException) -> KerberosFailure | None:
    """The Kerberos failure inside ``exc`` (krb5.Krb5Error from getting a ticket with a
    password, gssapi's GSSError from the ticket cache or a service ticket, both possibly
    wrapped by pyspnego), or None when ``exc`` is not one."""
    if isinstance(exc, KerberosError):
        return exc.failure
    for current in _chain(exc):
        module = type(current).__module__ or ""
        if module.startswith("krb5") and isinstance(getattr(current, "err_code", None), int):
            code = int(current.err_code)  # type: ignore[attr-defined]
            text = re.sub(r"\s+-?\d+$", "", str(current))  # pykrb5 appends the code
            return KerberosFailure(_CODES.get(code, KerberosProblem.OTHER), text, code)
        if module.startswith("gssapi") and isinstance(getattr(current, "maj_code", None), int):
            minor = _signed(int(getattr(current, "min_code", 0) or 0))
            text = _minor_text(str(current))
            problem = _CODES.get(minor)
            if problem is None:
                major = int(current.maj_code) & 0xFF0000  # type: ignore[attr-defined]
                if major == _GSS_S_CREDENTIALS_EXPIRED:
                    problem = KerberosProblem.TICKET_EXPIRED
                elif major == _GSS_S_NO_CRED:
                    problem = KerberosProblem.NO_TICKET
                else:
                    problem = KerberosProblem.OTHER
            return KerberosFailure(problem, text, minor or None)
    return None


def _realm_in(detail: str) -> str | None:
    match = re.search(r"realm ['\"]([^'\"]+)['\"]", detail)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Account:
    """Whose tickets: ``principal`` None is the default principal of the operator's cache;
    ``reference`` says where the password comes from (never the password)."""

    username: str | None
    principal: str | None
    reference: str | None  # "env:NAME"...; None: the ticket cache


def explain(failure: KerberosFailure, account: Account, target: Target | None) -> tuple[str, str]:
    """(what went wrong, what to do) for an operator; no secret in either."""
    who = account.principal or "the ticket cache's default principal"
    if account.username and account.principal and account.username != account.principal:
        who = f"{account.username} ({account.principal})"
    settings = configured_realm()
    realm = (
        _realm_in(failure.detail)
        or (account.principal.rpartition("@")[2] if account.principal else "")
        or (settings.realm if settings else "the default realm")
    )
    where = (
        f"defaults.kerberos in the inventory (KDC {settings.kdc})"
        if settings is not None
        else f"the krb5 configuration ({os.environ.get('KRB5_CONFIG') or '/etc/krb5.conf'})"
    )
    ccache = os.environ.get("KRB5CCNAME") or "the default ticket cache"
    problem = failure.problem
    if problem is KerberosProblem.NO_KERBEROS:
        return (
            "Kerberos is not available: the gssapi and krb5 Python bindings are missing",
            "pip install 'raorch[kerberos]' (it builds against MIT Kerberos: apt-get install "
            "libkrb5-dev krb5-user, or dnf install krb5-devel krb5-workstation)",
        )
    if problem is KerberosProblem.KDC_UNREACHABLE:
        port = settings.kdc_port if settings is not None else 88
        return (
            f"no KDC of realm {realm} answered ({failure.detail})",
            f"check that the domain controller named in {where} is up and that its Kerberos "
            f"port ({port}, TCP and UDP) is open from this machine",
        )
    if problem is KerberosProblem.WRONG_REALM:
        return (
            f"no KDC is known for realm {realm} ({failure.detail}): the realm is wrong, or "
            "no configuration names it",
            "an Active Directory realm is the domain's DNS name in capitals "
            "(user@CORP.EXAMPLE.COM, not CORP or corp.example.com); name it with its KDC in "
            "the inventory (defaults.kerberos: {realm: CORP.EXAMPLE.COM, kdc: dc1...}) or in "
            "krb5.conf",
        )
    if problem is KerberosProblem.UNKNOWN_ACCOUNT:
        return (
            f"the KDC does not know the account {who} ({failure.detail})",
            "check the user name and the realm: DOMAIN\\user becomes user@"
            f"{settings.realm if settings else '<default_realm>'}; a realm the KDC does not "
            "serve is answered the same way",
        )
    if problem is KerberosProblem.CLOCK_SKEW:
        return (
            "the clocks differ by more than Kerberos allows (5 minutes by default, the "
            "domain's 'Maximum tolerance for computer clock synchronization')"
            + (f" between this machine and the KDC or host {target.name}" if target else ""),
            "synchronise this machine's clock with the domain (NTP: chronyd / systemd-timesyncd "
            "against a domain controller); if only some hosts fail, fix their time "
            "(w32tm /resync)",
        )
    if problem is KerberosProblem.PASSWORD_EXPIRED:
        return (
            f"the password of {who} has expired, or must be changed at the next logon",
            f"change it (kpasswd {account.principal or 'USER@REALM'}, or on a Windows machine), "
            f"then update what {account.reference or 'the reference'} gives",
        )
    if problem is KerberosProblem.WRONG_PASSWORD:
        return (
            f"the KDC refused the password of {who} (pre-authentication failed)",
            f"fix the password that {account.reference or 'the reference'} gives; raorch tried "
            "it once for the whole run, so hosts did not add failed logons to the account's "
            "lockout count",
        )
    if problem is KerberosProblem.ACCOUNT_REVOKED:
        return (
            f"the KDC revoked the credentials of {who}: the account is disabled, expired or "
            "locked out",
            "enable, unlock or extend the account in Active Directory (Enable-ADAccount, "
            "Unlock-ADAccount, Set-ADAccountExpiration)",
        )
    if problem is KerberosProblem.NO_TICKET:
        return (
            f"no Kerberos ticket for {who} in {ccache}, and no password in the inventory "
            f"({failure.detail})",
            f"run kinit {account.principal or 'USER@REALM'} first (or point KRB5CCNAME at the "
            "cache holding its ticket), or give the credentials a password reference",
        )
    if problem is KerberosProblem.TICKET_EXPIRED:
        return (
            f"the Kerberos ticket of {who} in {ccache} has expired ({failure.detail})",
            f"run kinit {account.principal or 'USER@REALM'} again, or give the credentials a "
            "password reference",
        )
    if problem is KerberosProblem.UNKNOWN_SPN and target is not None:
        spn = spn_of(target)
        if target.connection.spn_host is None and _is_ip(target.address):
            hint = (
                f"the host is addressed by IP ({target.address}) and Kerberos names hosts: set "
                "connection.spn_host: <its DNS name> for this host, or register the address "
                f"(setspn -S {spn} {computer_account(target)})"
            )
        elif target.connection.spn_host is None:
            hint = (
                f"register it on the host's computer account (setspn -S {spn} "
                f"{computer_account(target)}), or, when {target.address} is an alias, set "
                "connection.spn_host to the name the host is registered under"
            )
        else:
            hint = (
                f"register it on the host's computer account (setspn -S {spn} "
                f"{computer_account(target)}), or set connection.spn_host to the name the "
                "host's SPN is registered under"
            )
        return (f"the KDC knows no service principal {spn} ({failure.detail})", hint)
    service = f" and {spn_of(target)}" if target is not None else ""
    return (
        f"Kerberos failed for {who}{service}: {failure.detail}",
        "see the message; klist shows the tickets, KRB5_TRACE=/dev/stderr traces the exchange",
    )


# ---------------------------------------------------------------- the run's tickets


@dataclass
class _Logon:
    ccache: str | None = None  # "MEMORY:..." holding the account's ticket-granting ticket
    expires: float = 0.0
    failure: KerberosFailure | None = None
    holder: Any = None  # the krb5 objects behind the cache, kept alive with it


_tickets_lock = threading.Lock()
_tickets: dict[tuple[str, str], _Logon] = {}
# Accounts for which the run chose NTLM (auth: negotiate, Kerberos unavailable).
_ntlm_only: set[tuple[str, str]] = set()


def _key(principal: str, password: str) -> tuple[str, str]:
    # The password is part of the key (two references may give two passwords), as a digest.
    return principal.casefold(), hashlib.sha256(password.encode("utf-8")).hexdigest()


def forget() -> None:
    """Drop the tickets this process got (tests; a long-lived library user)."""
    with _tickets_lock:
        _tickets.clear()
        _ntlm_only.clear()


def _bindings() -> tuple[Any, Any]:
    try:
        import gssapi
        import krb5
    except ImportError as exc:
        raise KerberosError(
            KerberosFailure(KerberosProblem.NO_KERBEROS, f"cannot import {exc.name}")
        ) from None
    return gssapi, krb5


def ticket_cache(principal: str, password: str) -> str:
    """The private in-memory cache holding ``principal``'s ticket-granting ticket, got with
    ``password`` once per process (and again shortly before it expires). A failure is
    remembered too: the password is never tried twice. Raises ``KerberosError``."""
    import time

    key = _key(principal, password)
    with _tickets_lock:
        logon = _tickets.get(key)
        if logon is not None and logon.failure is not None:
            raise KerberosError(logon.failure)
        if logon is not None and logon.ccache and logon.expires - time.time() > _RENEW_BEFORE:
            return logon.ccache
        _gssapi, krb5 = _bindings()
        try:
            ctx = krb5.init_context()
            client = krb5.parse_name_flags(ctx, principal.encode("utf-8"))
            options = krb5.get_init_creds_opt_alloc(ctx)
            # Accept the name the KDC answers with (AD canonicalizes user@REALM's case).
            krb5.get_init_creds_opt_set_canonicalize(options, True)
            creds = krb5.get_init_creds_password(
                ctx, client, options, password=password.encode("utf-8")
            )
            cache = krb5.cc_new_unique(ctx, b"MEMORY")
            krb5.cc_initialize(ctx, cache, creds.client)
            krb5.cc_store_cred(ctx, cache, creds)
        except Exception as exc:
            failure = failure_of(exc) or KerberosFailure(
                KerberosProblem.OTHER, f"{type(exc).__name__}: {exc}"
            )
            if failure.problem is not KerberosProblem.KDC_UNREACHABLE:
                # Remembered: a refused password is never sent again. A KDC that did not
                # answer may answer later.
                _tickets[key] = _Logon(failure=failure)
            raise KerberosError(failure) from None
        name = f"{(cache.cache_type or b'MEMORY').decode()}:{cache.name.decode()}"
        _tickets[key] = _Logon(name, float(creds.times.endtime), None, (ctx, cache))
        return name


def use_ntlm(target: Target, password: str) -> bool:
    """auth: negotiate whose Kerberos the run's logon found unavailable: NTLM directly."""
    creds = target.credentials
    if target.connection.auth is not AuthMethod.NEGOTIATE or creds is None or not password:
        return False
    realm = configured_realm()
    return _key(principal_for(creds.username, realm.realm if realm else None), password) in (
        _ntlm_only
    )


def session_credentials(target: Target, password: str) -> tuple[Any, str | None]:
    """The ``username`` and ``password`` to give pypsrp's WSMan for a Kerberos or Negotiate
    host: pyspnego credential objects (pypsrp hands ``username`` to ``spnego.client``).

    - no password: the principal (or None: the cache's default one) from the operator's
      ticket cache;
    - a password: the run's ticket for the account (``ticket_cache``); with negotiate, the
      password too, under the user name as written, for NTLM when Kerberos cannot be used
      for a host (as Windows' Negotiate does).
    """
    creds = target.credentials
    realm = configured_realm()
    principal = principal_for(creds.username, realm.realm if realm else None) if creds else None
    if creds is None or not password:
        return principal, None
    assert principal is not None
    from spnego import KerberosCCache, Password

    cache = KerberosCCache(ccache=ticket_cache(principal, password), principal=principal)
    if target.connection.auth is AuthMethod.NEGOTIATE:
        return [cache, Password(username=creds.username, password=password)], None
    return [cache], None


def account_of(target: Target, password: str) -> Account:
    creds = target.credentials
    realm = configured_realm()
    principal = principal_for(creds.username, realm.realm if realm else None) if creds else None
    reference = str(creds.password) if creds is not None and creds.password is not None else None
    return Account(creds.username if creds else None, principal, reference if password else None)


def _service_ticket(gssapi: Any, credential: Any, target: Target) -> None:
    """Ask for ``target``'s service ticket (a TGS exchange with the KDC; no host contacted)."""
    name = gssapi.Name(f"{SERVICE}@{target.spn_host}", gssapi.NameType.hostbased_service)
    mech = gssapi.OID.from_int_seq(_KRB5_MECH)
    context = gssapi.SecurityContext(name=name, creds=credential, usage="initiate", mech=mech)
    context.step()


# What a service ticket request can say about the account, the KDC or the clock, rather
# than about the host it names (an unknown SPN, a host account without a usable key, a
# realm of its own): these stop the run; the others are left to that host.
_NOT_THE_HOST = frozenset(
    {
        KerberosProblem.KDC_UNREACHABLE,
        KerberosProblem.CLOCK_SKEW,
        KerberosProblem.TICKET_EXPIRED,
        KerberosProblem.NO_TICKET,
        KerberosProblem.ACCOUNT_REVOKED,
        KerberosProblem.PASSWORD_EXPIRED,
        KerberosProblem.NO_KERBEROS,
    }
)


def _check(target: Target, password: str) -> None:
    """The account's ticket-granting ticket (every failure is the account's), then the first
    host's service ticket (a failure that is the host's own is left to the host)."""
    gssapi, _krb5 = _bindings()
    mech = gssapi.OID.from_int_seq(_KRB5_MECH)
    account = account_of(target, password)
    try:
        if password:
            assert account.principal is not None
            cache = ticket_cache(account.principal, password)
            credential = gssapi.Credentials(
                base=gssapi.raw.acquire_cred_from(
                    {b"ccache": cache.encode()}, usage="initiate", mechs=[mech]
                ).creds
            )
        else:
            name = (
                None
                if account.principal is None
                else gssapi.Name(account.principal, gssapi.NameType.user)
            )
            credential = gssapi.Credentials(name=name, usage="initiate", mechs=[mech])
            _ = credential.lifetime  # raises when the ticket has expired
    except KerberosError:
        raise
    except Exception as exc:
        failure = failure_of(exc)
        if failure is None:
            raise
        raise KerberosError(failure) from None
    try:
        _service_ticket(gssapi, credential, target)
    except Exception as exc:
        failure = failure_of(exc)
        if failure is not None and failure.problem in _NOT_THE_HOST:
            raise KerberosError(failure) from None


def logon(targets: Iterable[Target], passwords: Mapping[str, str]) -> list[str]:
    """Check every Kerberos account of a run once, before any host is contacted.

    Raises ``KerberosLogonError`` when an account cannot authenticate anywhere (its password,
    its ticket, the KDC or the clock): no host would do better, and trying each would count
    failed logons against the account. An unknown SPN concerns one host: left to that host.
    ``auth: negotiate`` with a password whose Kerberos is unavailable (no KDC, no realm) goes
    on with NTLM, as Windows' Negotiate does, with a warning; its account refused (wrong or
    expired password, locked out) stops the run like Kerberos. Returns the warnings."""
    warnings: list[str] = []
    done: set[tuple[str | None, str]] = set()
    for target in targets:
        if not target.connection.auth.kerberos:
            continue
        password = passwords.get(target.name, "")
        account = account_of(target, password)
        seen = (account.principal, hashlib.sha256(password.encode()).hexdigest())
        if seen in done:
            continue
        done.add(seen)
        try:
            _check(target, password)
        except KerberosError as exc:
            failure = exc.failure
            negotiate = target.connection.auth is AuthMethod.NEGOTIATE
            # Library texts never hold the password; masked anyway, as every message is.
            message, hint = (
                text.replace(password, "********") if password else text
                for text in explain(failure, account, None)
            )
            if negotiate and password and not failure.problem.ntlm_fails_too:
                assert account.principal is not None
                with _tickets_lock:
                    _ntlm_only.add(_key(account.principal, password))
                warnings.append(
                    f"warning: Kerberos cannot be used for {account.username}: {message}; "
                    "auth: negotiate goes on with NTLM for its hosts (hosts that refuse NTLM "
                    f"will fail). {hint}"
                )
                continue
            who = account.username or account.principal or "the ticket cache"
            raise KerberosLogonError(
                f"the Kerberos logon of {who} failed, so no host was contacted: {message}", hint
            ) from None
    return warnings
