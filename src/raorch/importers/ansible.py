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
from dataclasses import dataclass, field, replace
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
from raorch.importers.waves import DEFAULT_WAVES, Proposal, WaveShare, parse_waves, propose
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
        """The draft of one host; None when it is left out (counted in ``skipped`` or
        ``no_user``) or wrong (its problems are in ``problems``)."""
        v = self.inv.effective_vars(name)
        kind = self._connection_kind(name, v)
        if kind is None:
            return None
        return _HostReader(self, name, kind, v).read()

    def _connection_kind(self, name: str, v: dict[str, Var]) -> str | None:
        """``psrp`` or ``winrm``; None for a host left out (another connection, or none and no
        ``--connection``) or whose ``ansible_connection`` cannot be read."""
        conn_var = v.get("ansible_connection")
        if conn_var is None:
            if self.opts.assume_connection is None:
                self.skipped.setdefault("no ansible_connection (Ansible would use ssh)", []).append(
                    name
                )
                return None
            return self.opts.assume_connection
        text = self._text("ansible_connection", conn_var)
        if text is None:
            return None
        kind = text.strip().removeprefix("ansible.builtin.")
        if kind not in CONNECTIONS:
            self.skipped.setdefault(f"ansible_connection={kind}", []).append(name)
            return None
        return kind

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


class _HostReader:
    """One host's variables read as its connection plugin (``kind``) reads them, step by step.

    Each step reads its option through ``pick``, which records the names the plugin reads
    (``used``: ``_leftovers`` reports the others) and where the value came from (``origins``:
    the output's comments). A step that finds a wrong value reports it, clears ``ok`` and
    returns a stand-in, and the reading goes on: one import reports every problem of a host.
    """

    def __init__(self, mapper: _Mapper, name: str, kind: str, v: dict[str, Var]) -> None:
        self.m = mapper  # the import's readers of values, its problems and notices
        self.name = name
        self.kind = kind
        self.v = v
        self.names = _NAMES[kind]
        self.origins: dict[str, Origin] = {}
        self.used: set[str] = {"ansible_connection", "ansible_group_priority"}
        self.ok = True

    def read(self) -> DraftHost | None:
        """The host's draft; None when a value is wrong or no account is known."""
        address = self.address()
        user = self.user()
        port = self.port()
        scheme_text = self.scheme_text()
        cert_given, cert_pem = self.pem_file("certificate_pem", "CERTIFICATE")
        key_given, key_pem = self.pem_file("certificate_key_pem", "PRIVATE KEY")
        scheme, port = _scheme_and_port(self.kind, scheme_text, port)
        auth = self.auth(user, cert_given)
        cert_validation, insecure_cert = self.cert_validation(scheme)
        insecure_basic = self.basic_over_http(auth, scheme)
        ca_bundle = self.ca_bundle(cert_validation)
        if auth is AuthMethod.CERTIFICATE:
            self.certificate_auth(scheme, cert_given and key_given)
        timeouts = self.timeouts()
        self.m._passwords(self.v, user, self.used)
        self.m._leftovers(self.v, self.used)
        if not self.ok:
            return None
        if user is None and auth is not AuthMethod.CERTIFICATE:
            user = self.user_from_options()
            if user is None:
                return None
        connection = DraftConnection(
            scheme=scheme,
            port=port,
            auth=auth,
            cert_validation=cert_validation,
            ca_bundle=ca_bundle,
            insecure=insecure_cert or insecure_basic,
            connect_timeout=timeouts.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            operation_timeout=timeouts.get("operation_timeout", DEFAULT_OPERATION_TIMEOUT),
            certificate_pem=cert_pem if auth is AuthMethod.CERTIFICATE else None,
            certificate_key_pem=key_pem if auth is AuthMethod.CERTIFICATE else None,
        )
        return self.draft(address, user, connection)

    def pick(self, option: str) -> tuple[str, Var] | None:
        """The variable that sets ``option`` (the later name of the plugin's list wins)."""
        found = self.m._get(self.v, self.names.get(option, ()))
        for n in self.names.get(option, ()):
            self.used.add(n)
        if found is not None:
            self.origins[option] = Origin(_short(found[1]), _scoped(*found))
        return found

    def address(self) -> str:
        found = self.pick("address")
        if found is None:
            return self.name
        text = self.m._text(*found)
        if text is None:
            self.ok = False
        elif not text.strip() or any(c.isspace() or ord(c) < 32 for c in text):
            self.m.fail(found[1].location, f"{found[0]} must be a host name or address", "")
            self.ok = False
        else:
            return text
        return self.name

    def user(self) -> str | None:
        found = self.pick("user")
        if found is None:
            return None
        text = self.m._text(*found)
        if text is None:
            self.ok = False
            return None
        if (
            not text.strip()
            or text != text.strip()
            or any(ord(c) < 32 for c in text)
            or re.search(r"\s[#;]", text)
        ):
            self.m.fail(
                found[1].location,
                f"{found[0]} must be an account name, without spaces around it or a "
                "comment after it",
                "a ' # comment' after a value in a :vars section is part of the value in "
                "Ansible: move the comment to its own line",
            )
            self.ok = False
            return None
        return text

    def port(self) -> int | None:
        found = self.pick("port")
        if found is None:
            return None
        number = self.m._number(found[0], found[1], 1, 65535)
        if number is None or number != int(number):
            self.ok = False
            if number is not None:
                self.m.fail(found[1].location, f"{found[0]} must be a whole number", "")
            return None
        return int(number)

    def scheme_text(self) -> str | None:
        """``http`` or ``https`` when set: the plugin defaults it from the port."""
        found = self.pick("scheme")
        if found is None:
            return None
        text = self.m._choice(found[0], found[1], ("http", "https"))
        if text is None:
            self.ok = False
        return text

    def pem_file(self, option: str, kind: str) -> tuple[bool, str | None]:
        """Whether ``option`` is set, and its file once checked to hold a PEM ``kind``."""
        found = self.pick(option)
        if found is None:
            return False, None
        return True, self.pem_path(found, kind)

    def pem_path(self, found: tuple[str, Var], kind: str) -> str | None:
        path = self.m._path(found[0], found[1], kind)
        self.ok = self.ok and path is not None
        return path

    def auth(self, user: str | None, cert_given: bool) -> AuthMethod:
        """The authentication method. A wrong value leaves psrp's default, negotiate, or
        Basic for winrm, for the checks that follow."""
        found = self.pick("auth")
        if self.kind == "psrp":
            if found is None:
                return AuthMethod.NEGOTIATE  # psrp.py: auth defaults to negotiate
            chosen = self.m._choice(found[0], found[1], tuple(_PSRP_AUTH))
            if chosen is None:
                self.ok = False
                return AuthMethod.NEGOTIATE
            return _PSRP_AUTH[chosen]
        auth = self.m._winrm_auth(found, user, cert_given)
        if auth is None:
            self.ok = False
            return AuthMethod.BASIC
        return auth

    def cert_validation(self, scheme: Scheme) -> tuple[bool, bool]:
        """Whether the host's certificate is checked, and whether the host is imported as
        insecure because it is not (``ignore`` with ``--keep-insecure``)."""
        validate = True
        found = self.pick("cert_validation")
        if found is not None:
            validate = self.validation_setting(found)
        if scheme is Scheme.HTTP:
            return True, False  # no certificate over http: the setting means nothing
        if validate:
            return True, False
        assert found is not None
        insecure = self.insecure(
            "insecure-cert",
            found[1].location,
            f"{found[0]}=ignore: raorch checks the host's certificate unless told "
            "insecure: true (without a check, anyone in the middle can pose as the "
            "host)",
            "give the CA that signed the WinRM certificates in the Ansible file "
            f"({self.names['ca_bundle'][-1]}) and drop 'ignore', or pass --keep-insecure "
            "to import it as insecure: true",
            f"{found[0]}=ignore imported as cert_validation: false, insecure: true "
            "(--keep-insecure)",
        )
        return False, insecure

    def validation_setting(self, found: tuple[str, Var]) -> bool:
        """``validate`` / ``ignore`` (or a YAML boolean); a wrong value validates."""
        value = found[1].value
        if isinstance(value, bool):
            return value
        chosen = self.m._choice(found[0], found[1], ("validate", "ignore"))
        if chosen is None:
            self.ok = False
            return True
        return chosen == "validate"

    def basic_over_http(self, auth: AuthMethod, scheme: Scheme) -> bool:
        """Whether the host is imported as insecure for sending Basic over http."""
        if auth is not AuthMethod.BASIC or scheme is not Scheme.HTTP:
            return False
        where = self.m._get(self.v, self.names["auth"])
        return self.insecure(
            "insecure-basic",
            where[1].location if where else self.m.inv.hosts[self.name].location,
            f"host {self.name}: Basic authentication over plain http sends the password in "
            "clear text" + ("" if where else " (winrm's default transport for this host)"),
            "use https, or ntlm / kerberos (ansible_winrm_transport / "
            "ansible_psrp_auth), or pass --keep-insecure to import it as insecure: true",
            "Basic over http imported as insecure: true (--keep-insecure)",
        )

    def insecure(self, key: str, location: Location, refusal: str, hint: str, note: str) -> bool:
        """A setting raorch refuses without ``insecure: true``: an error, or with
        ``--keep-insecure`` a notice and True (the host is imported as insecure)."""
        if not self.m.opts.keep_insecure:
            self.m.fail(location, refusal, hint)
            self.ok = False
            return False
        self.m.notes.add(key, location, note, "raorch warns about these hosts on every run")
        return True

    def ca_bundle(self, cert_validation: bool) -> str | None:
        found = self.pick("ca_bundle")
        # Kept for an http host too (where it is not used), so that hosts of a group that
        # names one CA share it in defaults; not with 'ignore', which Ansible says ignores it.
        if found is None or not cert_validation:
            return None
        return self.pem_path(found, "CERTIFICATE")

    def certificate_auth(self, scheme: Scheme, pair_given: bool) -> None:
        """Certificate authentication needs https and the certificate with its key."""
        location = self.m.inv.hosts[self.name].location
        if scheme is not Scheme.HTTPS:
            self.m.fail(
                location,
                f"host {self.name}: certificate authentication needs https",
                "set the scheme / protocol to https",
            )
            self.ok = False
        if not pair_given:
            self.m.fail(
                location,
                f"host {self.name}: certificate authentication needs the certificate and its key",
                f"set {self.names['certificate_pem'][0]} and "
                f"{self.names['certificate_key_pem'][0]}",
            )
            self.ok = False

    def timeouts(self) -> dict[str, float]:
        """The timeouts set (winrm has no connect timeout: raorch's default stays)."""
        timeouts: dict[str, float] = {}
        for option in ("connect_timeout", "operation_timeout"):
            found = self.pick(option)
            if found is not None:
                number = self.m._number(found[0], found[1], 1, 86400)
                if number is None:
                    self.ok = False
                else:
                    timeouts[option] = number
        return timeouts

    def user_from_options(self) -> str | None:
        """``--user`` for a host without an account; None (the host counted) without one."""
        if self.m.opts.user is None:
            self.m.no_user.append(self.name)
            return None
        self.origins["user"] = Origin("--user")
        return self.m.opts.user

    def draft(self, address: str, user: str | None, connection: DraftConnection) -> DraftHost:
        host = self.m.inv.hosts[self.name]
        first_group = next((g for g in host.groups if g not in (ALL, UNGROUPED)), None)
        return DraftHost(
            name=self.name,
            address=address,
            connection=connection,
            username=user,
            password=None,  # set once every account is known
            origin=Origin.at(host.location, f"[{first_group or UNGROUPED}] ({self.kind})"),
            field_origins={k: o for k, o in self.origins.items() if k not in ("address", "user")},
            group=first_group,
        )


def _scheme_and_port(kind: str, scheme_text: str | None, port: int | None) -> tuple[Scheme, int]:
    """The scheme and port the plugin connects with: each defaults from the other."""
    if kind == "psrp":
        # psrp.py, _build_kwargs: protocol and port default from each other.
        if scheme_text is None:
            if port is None:
                return Scheme.HTTPS, 5986
            return (Scheme.HTTP if port == 5985 else Scheme.HTTPS), port
        scheme = Scheme(scheme_text)
        return scheme, port if port is not None else DEFAULT_PORTS[scheme]
    # winrm.py: port defaults to 5986; scheme http only for port 5985.
    port = port if port is not None else 5986
    if scheme_text:
        return Scheme(scheme_text), port
    return (Scheme.HTTP if port == 5985 else Scheme.HTTPS), port


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
    chosen = _chosen_hosts(inv, options.groups)
    mapper = _Mapper(inv, options)
    hosts = _mapped_hosts(mapper, chosen)
    counts = Counter(h.username for h in hosts if h.username is not None)
    refs = _password_refs([a for a, _ in counts.most_common()], options.password_ref)
    hosts = [h if h.username is None else replace(h, password=refs[h.username]) for h in hosts]
    domains, domains_origin = _domains(options.domains, counts, hosts)
    groups = _draft_groups(inv, hosts)
    proposal = propose(options.waves, [(h.name, h.group) for h in hosts])
    notices: list[Notice] = [*inv.notices, *mapper.notes.notices(), *_left_out(mapper)]
    if hosts:
        notices += proposal.notices()
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
    summary = _summary(mapper, hosts, groups, proposal, counts, refs)
    notices.sort(key=lambda n: (n.location.file, n.location.line or 0))
    return ImportResult(draft, tuple(notices), tuple(summary))


def _chosen_hosts(inv: AnsibleInventory, groups: tuple[str, ...]) -> list[str]:
    """The hosts to import: all, or the members of ``--group`` (an unknown one is an error)."""
    chosen = list(inv.hosts)
    if not groups:
        return chosen
    unknown = [g for g in groups if g not in inv.groups]
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
    for g in groups:
        members |= inv.members(g)
    return [h for h in chosen if h in members]


def _mapped_hosts(mapper: _Mapper, chosen: list[str]) -> list[DraftHost]:
    """The drafts of the chosen hosts; ``InputError`` with every problem of every host, in
    file order, and one for the hosts without an account."""
    hosts = [h for h in (mapper.host(name) for name in chosen) if h is not None]
    problems = list(mapper.problems)
    if mapper.no_user:
        first = mapper.inv.hosts[mapper.no_user[0]].location
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
    return hosts


def _domains(
    given: tuple[str, ...], accounts: Counter[str], hosts: list[DraftHost]
) -> tuple[tuple[str, ...], str]:
    """The domains and where they come from: ``--domain``, else the accounts' domains."""
    if given:
        return given, "--domain"
    derived = [d for d in (_domain_of(u) for u in accounts) if d is not None]
    domains = tuple(dict.fromkeys(derived))
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
    return domains, "from the account names: check them (the hosts' domains, --domain)"


def _left_out(mapper: _Mapper) -> list[Notice]:
    """A notice per reason hosts were left out, and one naming the variables not imported
    that are not Ansible's."""
    notices: list[Notice] = []
    for reason, names in mapper.skipped.items():
        shown = ", ".join(names[:5]) + (f", +{len(names) - 5}" if len(names) > 5 else "")
        hint = (
            "give --connection psrp (or winrm) if they are WinRM hosts"
            if reason.startswith("no ansible_connection")
            else "raorch reaches hosts over WinRM only (psrp or winrm)"
        )
        notices.append(
            Problem(
                mapper.inv.hosts[names[0]].location,
                f"{len(names)} host(s) left out, {reason}: {shown}",
                hint,
            )
        )
    if mapper.other_vars:
        names = sorted(mapper.other_vars)
        notices.append(
            Problem(
                Location(mapper.inv.file),
                f"variables that are not connection settings, not imported: {', '.join(names)}",
                "",
            )
        )
    return notices


def _draft_groups(inv: AnsibleInventory, hosts: list[DraftHost]) -> list[DraftGroup]:
    """The Ansible groups with an imported member (``all`` and ``ungrouped`` aside)."""
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
    return groups


def _summary(
    mapper: _Mapper,
    hosts: list[DraftHost],
    groups: list[DraftGroup],
    proposal: Proposal,
    accounts: Counter[str],
    refs: dict[str, SecretRef],
) -> list[str]:
    """The summary lines: counts, the waves, each account and where its password comes from."""
    by_kind = Counter(h.origin.what.rsplit("(", 1)[-1].rstrip(")") for h in hosts)
    left_out = sum(len(v) for v in mapper.skipped.values())
    summary = [
        f"hosts: {len(hosts)} imported ("
        + ", ".join(f"{k}: {n}" for k, n in sorted(by_kind.items()))
        + f"), {left_out} left out",
        f"groups: {len(groups)}",
        proposal.summary(),
    ]
    for account, n in accounts.most_common():
        summary.append(f"account {account}: {n} host(s), password from {refs[account]}")
    if mapper.passwords_seen:
        summary.append("passwords in the Ansible files: not copied (see the warnings)")
    return summary
