"""``raorch inventory from-ansible``: an Ansible inventory's WinRM hosts as a raorch draft.

Each host's variables are merged as Ansible merges them (``ansible_source``), then read the way
Ansible's two WinRM connection plugins read them (ansible/ansible, lib/ansible/plugins/
connection/psrp.py and winrm.py; docs: ansible-documentation, docs/docsite/rst/os_guide/
windows_winrm.rst):

- ``ansible_connection``: ``psrp`` or ``winrm`` (``ansible.builtin.`` prefix allowed); a host
  with another connection is left out and counted; a host without one too, unless
  ``--connection`` says what to assume (Ansible's default is ssh).
- address ``ansible_host`` (``ansible_psrp_host`` / ``ansible_winrm_host`` win), else the
  host's name; user ``ansible_user`` (``ansible_psrp_user`` / ``ansible_winrm_user`` win);
  port ``ansible_port`` (``ansible_psrp_port`` / ``ansible_winrm_port`` win). Of two names
  for one option, the later one of the plugin's list wins, as Ansible's config reads them.
- psrp: ``ansible_psrp_protocol`` (no protocol and no port: https on 5986; a port alone: http
  only for 5985; a protocol alone: its standard port), ``ansible_psrp_auth`` (default
  negotiate), ``ansible_psrp_cert_validation`` (validate | ignore),
  ``ansible_psrp_ca_cert`` / ``ansible_psrp_cert_trust_path``, the certificate pair,
  ``ansible_psrp_connection_timeout`` and ``ansible_psrp_operation_timeout``.
- winrm: port default 5986; ``ansible_winrm_scheme`` (default http for port 5985, else
  https); ``ansible_winrm_transport`` (a list: the first one is used; none: kerberos for a
  user@REALM account, else basic, which is what pywinrm's ``ssl`` / ``plaintext`` are);
  ``ansible_winrm_server_cert_validation``, ``ansible_winrm_ca_trust_path``, the certificate
  pair, ``ansible_winrm_operation_timeout_sec`` / ``ansible_winrm_connection_timeout``.

Passwords (``ansible_password``, ``ansible_winrm_pass``/``_password``, ``ansible_psrp_password``,
``ansible_become_password``... any ``ansible_*pass*``) are never read into the draft: the host
gets a reference (``--password-ref``, default ``env:RAORCH_PASSWORD``) and a notice names the
file:line and the variable, never the value. Settings raorch refuses without ``insecure: true``
(``cert_validation: ignore`` over https, Basic over http) are errors unless ``--keep-insecure``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raorch.importers.ansible_source import (
    ALL,
    UNGROUPED,
    AnsibleInventory,
    Var,
    Vaulted,
    read_inventory,
)
from raorch.importers.draft import (
    DraftConnection,
    DraftGroup,
    DraftHost,
    ImportResult,
    InventoryDraft,
    Notice,
    Origin,
)
from raorch.importers.waves import DEFAULT_WAVES, WaveShare, parse_waves, propose
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import AuthMethod, Scheme, SecretKind, SecretRef
from raorch.models.load import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_PORTS,
    pem_problem,
)

CONNECTIONS = ("psrp", "winrm")
DEFAULT_PASSWORD_REF = SecretRef(SecretKind.ENV, "RAORCH_PASSWORD")

# The options each plugin reads, lowest precedence first (the plugins' DOCUMENTATION ``vars``).
_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "psrp": {
        "address": ("ansible_host", "ansible_psrp_host"),
        "user": ("ansible_user", "ansible_psrp_user"),
        "port": ("ansible_port", "ansible_psrp_port"),
        "scheme": ("ansible_psrp_protocol",),
        "auth": ("ansible_psrp_auth",),
        "cert_validation": ("ansible_psrp_cert_validation",),
        "ca_bundle": ("ansible_psrp_cert_trust_path", "ansible_psrp_ca_cert"),
        "certificate_pem": ("ansible_psrp_certificate_pem",),
        "certificate_key_pem": ("ansible_psrp_certificate_key_pem",),
        "connect_timeout": ("ansible_psrp_connection_timeout",),
        "operation_timeout": ("ansible_psrp_operation_timeout",),
    },
    "winrm": {
        "address": ("ansible_host", "ansible_winrm_host"),
        "user": ("ansible_user", "ansible_winrm_user"),
        "port": ("ansible_port", "ansible_winrm_port"),
        "scheme": ("ansible_winrm_scheme",),
        "auth": ("ansible_winrm_transport",),
        "cert_validation": ("ansible_winrm_server_cert_validation",),
        "ca_bundle": ("ansible_winrm_ca_trust_path",),
        "certificate_pem": ("ansible_winrm_cert_pem",),
        "certificate_key_pem": ("ansible_winrm_cert_key_pem",),
        # winrm.py sets the operation timeout from connection_timeout when given.
        "operation_timeout": (
            "ansible_winrm_operation_timeout_sec",
            "ansible_winrm_connection_timeout",
        ),
    },
}

# Options raorch has no setting for; harmless when they hold the plugin's default.
_DEFAULTS_OK: dict[str, object] = {
    "ansible_psrp_path": "wsman",
    "ansible_psrp_message_encryption": "auto",
    "ansible_psrp_negotiate_send_cbt": True,
    "ansible_psrp_negotiate_service": "WSMAN",
    "ansible_psrp_configuration_name": "Microsoft.PowerShell",
    "ansible_psrp_ignore_proxy": False,
    "ansible_psrp_max_envelope_size": 153600,
    "ansible_psrp_reconnection_retries": 0,
    "ansible_psrp_read_timeout": 30,
    "ansible_winrm_path": "/wsman",
    "ansible_winrm_message_encryption": "auto",
    "ansible_winrm_send_cbt": True,
    "ansible_winrm_service": "HTTP",
    "ansible_winrm_kinit_cmd": "kinit",
    "ansible_shell_type": "powershell",
}
_WHY_NOT: dict[str, str] = {
    "ansible_psrp_negotiate_hostname_override": "raorch names the Kerberos service after the "
    "host's address: give the host's DNS name as its address",
    "ansible_winrm_kerberos_hostname_override": "raorch names the Kerberos service after the "
    "host's address: give the host's DNS name as its address",
    "ansible_winrm_read_timeout_sec": "raorch's read timeout is its operation timeout plus a "
    "margin",
    "ansible_psrp_read_timeout": "raorch's read timeout is its operation timeout plus a margin",
    "ansible_psrp_message_encryption": "raorch encrypts messages over http and relies on TLS "
    "over https, as 'auto' does",
    "ansible_winrm_message_encryption": "raorch encrypts messages over http and relies on TLS "
    "over https, as 'auto' does",
}

_PSRP_AUTH = {
    "basic": AuthMethod.BASIC,
    "certificate": AuthMethod.CERTIFICATE,
    "negotiate": AuthMethod.NEGOTIATE,
    "kerberos": AuthMethod.KERBEROS,
    "ntlm": AuthMethod.NTLM,
    "credssp": AuthMethod.CREDSSP,
}
# pywinrm's transports; "ssl" is Basic over https (certificate auth when a certificate is
# given), "plaintext" Basic over http (pywinrm, winrm/transport.py).
_WINRM_TRANSPORT = {
    **_PSRP_AUTH,
    "plaintext": AuthMethod.BASIC,
    "ssl": AuthMethod.BASIC,
}


def is_password(name: str) -> bool:
    """Whether a variable holds a password (or a passphrase): never read, never copied."""
    lowered = name.casefold()
    return lowered.startswith("ansible_") and "pass" in lowered


def _is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@dataclass(frozen=True, slots=True)
class AnsibleOptions:
    assume_connection: str | None = None  # "psrp" | "winrm": for hosts without one
    user: str | None = None  # for hosts without ansible_user
    password_ref: SecretRef = DEFAULT_PASSWORD_REF
    domains: tuple[str, ...] = ()
    keep_insecure: bool = False
    groups: tuple[str, ...] = ()  # only the hosts of these groups
    waves: tuple[WaveShare, ...] = field(default_factory=lambda: parse_waves(DEFAULT_WAVES))
    playbook: str | None = None  # absolute
    fmt: str | None = None  # "ini" | "yaml"; None: by extension, then content
    command: str = "raorch inventory from-ansible"


class _Notes:
    """Notices gathered by key: one per key, with where it also occurs."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[Location, str, str]] = {}
        self.where: dict[str, list[Location]] = {}

    def add(self, key: str, location: Location, message: str, hint: str = "") -> None:
        self.first.setdefault(key, (location, message, hint))
        places = self.where.setdefault(key, [])
        if location not in places:
            places.append(location)

    def notices(self) -> list[Notice]:
        out = []
        for key, (location, message, hint) in self.first.items():
            more = self.where[key][1:]
            if more:
                shown = ", ".join(f"{p.file}:{p.line}" for p in more[:3])
                extra = f", +{len(more) - 3}" if len(more) > 3 else ""
                message += f" (also at {shown}{extra})"
            out.append(Problem(location, message, hint))
        return out


def _scoped(name: str, var: Var) -> str:
    """``ansible_port ([web:vars])``: the variable and where it is set, when the file alone
    does not say."""
    return f"{name} ({var.scope})" if var.scope else name


def _short(var: Var) -> str:
    return f"{var.location.file}:{var.location.line}"


class _Mapper:
    def __init__(self, inv: AnsibleInventory, options: AnsibleOptions) -> None:
        self.inv = inv
        self.opts = options
        self.problems: list[Problem] = []
        self._reported: set[tuple[str, int | None, str]] = set()
        self.notes = _Notes()
        self.skipped: dict[str, list[str]] = {}  # reason -> hosts
        self.no_user: list[str] = []
        self.other_vars: Counter[str] = Counter()
        self.passwords_seen = 0

    # -- errors, once per place

    def fail(self, location: Location, message: str, hint: str = "") -> None:
        key = (location.file, location.line, message)
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(Problem(location, message, hint))

    # -- reading one value

    def _get(self, v: dict[str, Var], names: Sequence[str]) -> tuple[str, Var] | None:
        found = None
        for name in names:  # the later name wins
            if name in v:
                found = (name, v[name])
        return found

    def _readable(self, name: str, var: Var) -> bool:
        if isinstance(var.value, Vaulted):
            self.fail(
                var.location,
                f"{name} is encrypted with Ansible Vault; raorch does not decrypt it",
                "write its value in a plain vars file, or set it in the raorch inventory",
            )
            return False
        if _is_template(var.value):
            self.fail(
                var.location,
                f"{name} is a Jinja template; raorch does not evaluate templates",
                "write the value itself, or set it in the raorch inventory after the import",
            )
            return False
        return True

    def _text(self, name: str, var: Var) -> str | None:
        if not self._readable(name, var):
            return None
        value = var.value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(var.location, f"{name} must be a string", "")
            return None
        return str(value)

    def _number(self, name: str, var: Var, low: float, high: float) -> float | None:
        if not self._readable(name, var):
            return None
        value = var.value
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                value = None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            self.fail(var.location, f"{name} must be a number from {low:g} to {high:g}", "")
            return None
        return float(value)

    def _choice(self, name: str, var: Var, choices: Sequence[str]) -> str | None:
        text = self._text(name, var)
        if text is None:
            return None
        if text.strip().lower() not in choices:
            self.fail(var.location, f"{name} must be one of {', '.join(choices)}", "")
            return None
        return text.strip().lower()

    def _path(self, name: str, var: Var, kind: str) -> str | None:
        text = self._text(name, var)
        if text is None:
            return None
        # Ansible's "path" options expand ~ and $VARS and are used relative to where Ansible
        # runs: here, the working directory.
        path = os.path.normpath(Path(os.path.expandvars(os.path.expanduser(text))).absolute())
        problem = pem_problem(Path(path), kind)
        if problem is not None:
            self.fail(
                var.location,
                f"{name}: {path}: {problem}",
                f"give a PEM file with the {kind.lower()} (a relative path is taken from the "
                "working directory, as Ansible does)",
            )
            return None
        return path

    # -- one host

    def host(self, name: str) -> DraftHost | None:
        v = self.inv.effective_vars(name)
        conn_var = v.get("ansible_connection")
        if conn_var is None:
            if self.opts.assume_connection is None:
                self.skipped.setdefault("no ansible_connection (Ansible would use ssh)", []).append(
                    name
                )
                return None
            kind = self.opts.assume_connection
        else:
            text = self._text("ansible_connection", conn_var)
            if text is None:
                return None
            kind = text.strip().removeprefix("ansible.builtin.")
            if kind not in CONNECTIONS:
                self.skipped.setdefault(f"ansible_connection={kind}", []).append(name)
                return None
        names = _NAMES[kind]
        origins: dict[str, Origin] = {}
        used: set[str] = {"ansible_connection", "ansible_group_priority"}

        def pick(option: str) -> tuple[str, Var] | None:
            found = self._get(v, names.get(option, ()))
            for n in names.get(option, ()):
                used.add(n)
            if found is not None:
                origins[option] = Origin(_short(found[1]), _scoped(*found))
            return found

        ok = True
        address = name
        found = pick("address")
        if found is not None:
            text = self._text(*found)
            if text is None:
                ok = False
            elif not text.strip() or any(c.isspace() or ord(c) < 32 for c in text):
                self.fail(found[1].location, f"{found[0]} must be a host name or address", "")
                ok = False
            else:
                address = text
        user: str | None = None
        found = pick("user")
        if found is not None:
            text = self._text(*found)
            if text is None:
                ok = False
            elif (
                not text.strip()
                or text != text.strip()
                or any(ord(c) < 32 for c in text)
                or re.search(r"\s[#;]", text)
            ):
                self.fail(
                    found[1].location,
                    f"{found[0]} must be an account name, without spaces around it or a "
                    "comment after it",
                    "a ' # comment' after a value in a :vars section is part of the value in "
                    "Ansible: move the comment to its own line",
                )
                ok = False
            else:
                user = text

        port: int | None = None
        found = pick("port")
        if found is not None:
            number = self._number(found[0], found[1], 1, 65535)
            if number is None or number != int(number):
                ok = False
                if number is not None:
                    self.fail(found[1].location, f"{found[0]} must be a whole number", "")
            else:
                port = int(number)
        scheme_found = pick("scheme")
        scheme_text = (
            self._choice(scheme_found[0], scheme_found[1], ("http", "https"))
            if scheme_found
            else None
        )
        if scheme_found is not None and scheme_text is None:
            ok = False

        cert_pem = key_pem = None
        found = pick("certificate_pem")
        cert_given = found is not None
        if found is not None:
            cert_pem = self._path(found[0], found[1], "CERTIFICATE")
            ok = ok and cert_pem is not None
        found = pick("certificate_key_pem")
        key_given = found is not None
        if found is not None:
            key_pem = self._path(found[0], found[1], "PRIVATE KEY")
            ok = ok and key_pem is not None

        if kind == "psrp":
            # psrp.py, _build_kwargs: protocol and port default from each other.
            if scheme_text is None and port is None:
                scheme, port = Scheme.HTTPS, 5986
            elif scheme_text is None:
                scheme = Scheme.HTTP if port == 5985 else Scheme.HTTPS
            else:
                scheme = Scheme(scheme_text)
                port = port if port is not None else DEFAULT_PORTS[scheme]
            auth = AuthMethod.NEGOTIATE  # psrp.py: auth defaults to negotiate
            found = pick("auth")
            if found is not None:
                chosen = self._choice(found[0], found[1], tuple(_PSRP_AUTH))
                if chosen is None:
                    ok = False
                else:
                    auth = _PSRP_AUTH[chosen]
        else:
            # winrm.py: port defaults to 5986; scheme http only for port 5985.
            port = port if port is not None else 5986
            scheme = (
                Scheme(scheme_text)
                if scheme_text
                else (Scheme.HTTP if port == 5985 else Scheme.HTTPS)
            )
            found = pick("auth")
            auth_or_none = self._winrm_auth(found, user, cert_given)
            if auth_or_none is None:
                ok = False
                auth = AuthMethod.BASIC
            else:
                auth = auth_or_none

        cert_validation = True
        found = pick("cert_validation")
        if found is not None:
            value = found[1].value
            if isinstance(value, bool):
                cert_validation = value
            else:
                chosen = self._choice(found[0], found[1], ("validate", "ignore"))
                if chosen is None:
                    ok = False
                else:
                    cert_validation = chosen == "validate"
        insecure = False
        if scheme is Scheme.HTTP:
            cert_validation = True  # no certificate over http: the setting means nothing
        elif not cert_validation:
            assert found is not None
            if not self.opts.keep_insecure:
                self.fail(
                    found[1].location,
                    f"{found[0]}=ignore: raorch checks the host's certificate unless told "
                    "insecure: true (without a check, anyone in the middle can pose as the "
                    "host)",
                    "give the CA that signed the WinRM certificates in the Ansible file "
                    f"({names['ca_bundle'][-1]}) and drop 'ignore', or pass --keep-insecure "
                    "to import it as insecure: true",
                )
                ok = False
            else:
                insecure = True
                self.notes.add(
                    "insecure-cert",
                    found[1].location,
                    f"{found[0]}=ignore imported as cert_validation: false, insecure: true "
                    "(--keep-insecure)",
                    "raorch warns about these hosts on every run",
                )
        if auth is AuthMethod.BASIC and scheme is Scheme.HTTP:
            where = self._get(v, names["auth"])
            location = where[1].location if where else self.inv.hosts[name].location
            if not self.opts.keep_insecure:
                self.fail(
                    location,
                    f"host {name}: Basic authentication over plain http sends the password in "
                    "clear text" + ("" if where else " (winrm's default transport for this host)"),
                    "use https, or ntlm / kerberos (ansible_winrm_transport / "
                    "ansible_psrp_auth), or pass --keep-insecure to import it as insecure: true",
                )
                ok = False
            else:
                insecure = True
                self.notes.add(
                    "insecure-basic",
                    location,
                    "Basic over http imported as insecure: true (--keep-insecure)",
                    "raorch warns about these hosts on every run",
                )

        ca_bundle = None
        found = pick("ca_bundle")
        # Kept for an http host too (where it is not used), so that hosts of a group that
        # names one CA share it in defaults; not with 'ignore', which Ansible says ignores it.
        if found is not None and cert_validation:
            ca_bundle = self._path(found[0], found[1], "CERTIFICATE")
            ok = ok and ca_bundle is not None

        if auth is AuthMethod.CERTIFICATE:
            if scheme is not Scheme.HTTPS:
                self.fail(
                    self.inv.hosts[name].location,
                    f"host {name}: certificate authentication needs https",
                    "set the scheme / protocol to https",
                )
                ok = False
            if not (cert_given and key_given):
                self.fail(
                    self.inv.hosts[name].location,
                    f"host {name}: certificate authentication needs the certificate and its key",
                    f"set {names['certificate_pem'][0]} and {names['certificate_key_pem'][0]}",
                )
                ok = False

        timeouts: dict[str, float] = {}
        for option in ("connect_timeout", "operation_timeout"):
            found = pick(option)
            if found is not None:
                number = self._number(found[0], found[1], 1, 86400)
                if number is None:
                    ok = False
                else:
                    timeouts[option] = number

        self._passwords(v, user, used)
        self._leftovers(v, used)
        if not ok:
            return None
        if user is None and auth is not AuthMethod.CERTIFICATE:
            if self.opts.user is None:
                self.no_user.append(name)
                return None
            user = self.opts.user
            origins["user"] = Origin("--user")
        assert port is not None  # every branch above gives the port a value
        connection = DraftConnection(
            scheme=scheme,
            port=port,
            auth=auth,
            cert_validation=cert_validation,
            ca_bundle=ca_bundle,
            insecure=insecure,
            connect_timeout=timeouts.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            operation_timeout=timeouts.get("operation_timeout", DEFAULT_OPERATION_TIMEOUT),
            certificate_pem=cert_pem if auth is AuthMethod.CERTIFICATE else None,
            certificate_key_pem=key_pem if auth is AuthMethod.CERTIFICATE else None,
        )
        host = self.inv.hosts[name]
        first_group = next((g for g in host.groups if g not in (ALL, UNGROUPED)), None)
        return DraftHost(
            name=name,
            address=address,
            connection=connection,
            username=user,
            password=None,  # set once every account is known
            origin=Origin.at(host.location, f"[{first_group or UNGROUPED}] ({kind})"),
            field_origins={k: o for k, o in origins.items() if k not in ("address", "user")},
            group=first_group,
        )

    def _winrm_auth(
        self, found: tuple[str, Var] | None, user: str | None, has_cert: bool
    ) -> AuthMethod | None:
        if found is None:
            # winrm.py: kerberos for a user@REALM account (when the kerberos library is
            # there), else "ssl" over https / "plaintext" over http: pywinrm's Basic.
            if user is not None and "@" in user:
                return AuthMethod.KERBEROS
            return AuthMethod.BASIC
        name, var = found
        if not self._readable(name, var):
            return None
        value = var.value
        items = value if isinstance(value, list) else str(value).split(",")
        transports = [str(t).strip().lower() for t in items if str(t).strip()]
        unknown = [t for t in transports if t not in _WINRM_TRANSPORT]
        if not transports or unknown:
            self.fail(
                var.location,
                f"{name}: unknown transport {', '.join(unknown) or '(empty)'}",
                f"one of {', '.join(_WINRM_TRANSPORT)}",
            )
            return None
        if len(transports) > 1:
            self.notes.add(
                f"transports:{','.join(transports)}",
                var.location,
                f"{name} lists {', '.join(transports)}: Ansible tries them in turn, raorch uses "
                f"one method: {transports[0]}",
                "change auth: in the raorch inventory if another one is meant",
            )
        first = transports[0]
        if first == "ssl" and has_cert:
            return AuthMethod.CERTIFICATE
        return _WINRM_TRANSPORT[first]

    def _passwords(self, v: dict[str, Var], user: str | None, used: set[str]) -> None:
        for name, var in v.items():
            if not is_password(name):
                continue
            used.add(name)
            self.passwords_seen += 1
            if "become" in name.casefold() or "sudo" in name.casefold():
                why = "raorch does not use become: it runs as the connecting account"
            else:
                why = "raorch never writes a password into an inventory"
            self.notes.add(
                f"password:{name}:{var.location.file}:{var.location.line}",
                var.location,
                f"{_scoped(name, var)}: the password is not copied ({why})",
                "raorch reads each account's password from the reference under its credentials "
                f"(--password-ref: {self.opts.password_ref}) when it connects",
            )

    def _leftovers(self, v: dict[str, Var], used: set[str]) -> None:
        for name, var in v.items():
            if name in used:
                continue
            if not name.startswith("ansible_"):
                self.other_vars[name] += 1
                continue
            if name in _DEFAULTS_OK and var.value == _DEFAULTS_OK[name]:
                continue
            if name.startswith("ansible_become"):
                why = "raorch does not use become: it runs as the connecting account"
            else:
                why = _WHY_NOT.get(name, "raorch has no such setting")
            self.notes.add(
                f"unused:{name}",
                var.location,
                f"{_scoped(name, var)} is not imported: {why}",
                "check that raorch's defaults suit these hosts, or edit the output",
            )


def _domain_of(user: str) -> str | None:
    if "\\" in user:
        domain = user.split("\\", 1)[0].strip()
        return domain or None
    if "@" in user:
        domain = user.rsplit("@", 1)[1].strip()
        return domain or None
    return None


def _password_refs(accounts: list[str], base: SecretRef) -> dict[str, SecretRef]:
    """A reference per account: the most used account gets ``base``; others a numbered
    variant for env: and file: (one secret per account), the same for prompt and keyring:
    (which already ask or look up per account)."""
    out: dict[str, SecretRef] = {}
    for i, account in enumerate(accounts):
        if i == 0 or base.kind in (SecretKind.PROMPT, SecretKind.KEYRING):
            out[account] = base
        else:
            out[account] = SecretRef(base.kind, f"{base.target}_{i + 1}")
    return out


def import_ansible(path: Path, options: AnsibleOptions) -> ImportResult:
    """Read an Ansible inventory into a draft. Raises ``InputError`` with every problem found
    (located in the Ansible files); the result's notices are the warnings to show."""
    inv = read_inventory(path, options.fmt)
    chosen = list(inv.hosts)
    if options.groups:
        unknown = [g for g in options.groups if g not in inv.groups]
        if unknown:
            known = sorted(set(inv.groups) - {ALL, UNGROUPED})
            raise InputError(
                [
                    Problem(
                        Location("--group"),
                        f"no group {g!r} in {inv.file}",
                        f"groups: {', '.join(known) or '(none)'}",
                    )
                    for g in unknown
                ]
            )
        members: set[str] = set()
        for g in options.groups:
            members |= inv.members(g)
        chosen = [h for h in chosen if h in members]

    mapper = _Mapper(inv, options)
    hosts = [h for h in (mapper.host(name) for name in chosen) if h is not None]
    problems = list(mapper.problems)
    if mapper.no_user:
        first = inv.hosts[mapper.no_user[0]].location
        shown = ", ".join(mapper.no_user[:5]) + (
            f", +{len(mapper.no_user) - 5}" if len(mapper.no_user) > 5 else ""
        )
        problems.append(
            Problem(
                first,
                f"{len(mapper.no_user)} host(s) have no ansible_user: {shown}",
                "set ansible_user in the Ansible inventory, or give --user 'DOMAIN\\name' for them",
            )
        )
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.location.file, p.location.line or 0)))

    notices: list[Notice] = list(inv.notices)
    counts = Counter(h.username for h in hosts if h.username is not None)
    refs = _password_refs([a for a, _ in counts.most_common()], options.password_ref)
    hosts = [
        h
        if h.username is None
        else DraftHost(
            name=h.name,
            address=h.address,
            connection=h.connection,
            username=h.username,
            password=refs[h.username],
            origin=h.origin,
            field_origins=h.field_origins,
            group=h.group,
        )
        for h in hosts
    ]

    domains = options.domains
    domains_origin = "--domain"
    if not domains:
        derived = [d for d in (_domain_of(u) for u in counts) if d is not None]
        domains = tuple(dict.fromkeys(derived))
        domains_origin = "from the account names: check them (the hosts' domains, --domain)"
    if hosts and not domains:
        raise InputError(
            [
                Problem(
                    Location("--domain"),
                    "no domain: the accounts carry none (DOMAIN\\name or name@domain)",
                    "give the hosts' domain: --domain CORP (repeat it for trusted domains)",
                )
            ]
        )

    notices += mapper.notes.notices()
    for reason, names in mapper.skipped.items():
        shown = ", ".join(names[:5]) + (f", +{len(names) - 5}" if len(names) > 5 else "")
        hint = (
            "give --connection psrp (or winrm) if they are WinRM hosts"
            if reason.startswith("no ansible_connection")
            else "raorch reaches hosts over WinRM only (psrp or winrm)"
        )
        notices.append(
            Problem(
                inv.hosts[names[0]].location,
                f"{len(names)} host(s) left out, {reason}: {shown}",
                hint,
            )
        )
    if mapper.other_vars:
        names = sorted(mapper.other_vars)
        notices.append(
            Problem(
                Location(inv.file),
                f"variables that are not connection settings, not imported: {', '.join(names)}",
                "",
            )
        )

    imported = {h.name for h in hosts}
    groups = []
    for gname, group in inv.groups.items():
        if gname in (ALL, UNGROUPED):
            continue
        members_of = inv.members(gname) & imported
        if not members_of:
            continue
        groups.append(
            DraftGroup(
                name=gname,
                hosts=tuple(h.name for h in hosts if h.name in members_of),
                origin=Origin.at(group.location) if group.location else None,
                note=f"children: {', '.join(group.children)}" if group.children else "",
            )
        )

    proposal = propose(options.waves, [(h.name, h.group) for h in hosts])
    for dropped in proposal.dropped if hosts else ():
        notices.append(
            Problem(
                Location("--waves"),
                f"wave {dropped!r} would have no host: not written",
                "fewer waves, or larger shares, for a fleet this size",
            )
        )

    draft = InventoryDraft(
        header=(
            f"Imported by `{options.command}` from {inv.file}.",
            "Review before use: the waves and their gates are a proposal; passwords were not",
            "copied (each account's password comes from the reference under credentials).",
            "Each host's comment says where it is defined in the Ansible inventory.",
        ),
        domains=domains,
        hosts=tuple(hosts),
        groups=tuple(groups),
        waves=proposal.waves,
        playbook=options.playbook,
        domains_origin=domains_origin,
    )
    by_kind = Counter(h.origin.what.rsplit("(", 1)[-1].rstrip(")") for h in hosts)
    left_out = sum(len(v) for v in mapper.skipped.values())
    summary = [
        f"hosts: {len(hosts)} imported ("
        + ", ".join(f"{k}: {n}" for k, n in sorted(by_kind.items()))
        + f"), {left_out} left out",
        f"groups: {len(groups)}",
        "waves: "
        + ", ".join(f"{w.name} ({'the rest' if w.rest else len(w.hosts)})" for w in proposal.waves),
    ]
    for account, n in counts.most_common():
        summary.append(f"account {account}: {n} host(s), password from {refs[account]}")
    if mapper.passwords_seen:
        summary.append("passwords in the Ansible files: not copied (see the warnings)")
    notices.sort(key=lambda n: (n.location.file, n.location.line or 0))
    return ImportResult(draft, tuple(notices), tuple(summary))
