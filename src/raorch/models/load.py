"""Load an inventory or a playbook file into checked models, or fail with located problems.

Three passes, each reporting every problem it finds (not just the first):

1. YAML, with marks (``raorch.models.yamlsource``): syntax, duplicate keys, odd tags;
2. shape, by the pydantic models: types, unknown keys (with "did you mean"), value rules
   (ports, percentages, secret references, helper accounts, firewall entries);
3. meaning, here: every host in exactly one wave, references to hosts and groups, credentials
   for every host, no insecure transport unless ``insecure: true`` says so.

Every problem names the file, line, column, field path and what is allowed. Secrets are parsed,
never resolved, here (``raorch.models.secrets`` resolves them when connecting).
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import (
    DEFAULT_SITE,
    AuthMethod,
    Connection,
    ConnectionSection,
    Credentials,
    CredentialsSection,
    Inventory,
    KerberosRealm,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
    WaveSpec,
    parse_kdc,
)
from raorch.models.playbook import Playbook
from raorch.models.secretref import parse_secret_ref
from raorch.models.yamlsource import PathKey, Source, format_path, read_yaml

M = TypeVar("M", bound=BaseModel)

# Built-in connection defaults, applied under the inventory's own defaults. WinRM's standard
# listener ports (learn.microsoft.com, "Installation and configuration for Windows Remote
# Management"): 5985 http, 5986 https.
DEFAULT_PORTS = {Scheme.HTTP: 5985, Scheme.HTTPS: 5986}
DEFAULT_SCHEME = Scheme.HTTPS
DEFAULT_AUTH = AuthMethod.NTLM
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_OPERATION_TIMEOUT = 60.0

_FRIENDLY = {
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "dict_type": "must be a mapping (key: value lines)",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


# ---------------------------------------------------------------- pydantic -> located problems


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _step(annotation: Any, segment: str | int) -> Any:
    """The type one segment below ``annotation`` (a model field, a dict value, a list item)."""
    model = _model_of(annotation)
    if model is not None:
        field = model.model_fields.get(str(segment))
        return field.annotation if field else None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _step(arg, segment)
            if found is not None:
                return found
        return None
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (tuple, list) and args:
        return args[0]
    return None


def _allowed_keys(root: type[BaseModel], path: PathKey) -> list[str]:
    annotation: Any = root
    for segment in path:
        annotation = _step(annotation, segment)
        if annotation is None:
            return []
    model = _model_of(annotation)
    return list(model.model_fields) if model else []


def _unknown_key_hint(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    listed = ", ".join(allowed)
    if close:
        return f"did you mean {close[0]!r}? allowed: {listed}"
    return f"allowed: {listed}" if allowed else "remove it"


def _validation_problems(
    exc: ValidationError, source: Source, root: type[BaseModel]
) -> list[Problem]:
    by_path: dict[PathKey, list[tuple[str, str, bool]]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        # Walk the loc through the data: segments that are not in the data are pydantic's
        # union-branch names ("int", "str") and are skipped, except the missing field's name.
        data: Any = source.data
        path: list[str | int] = []
        loc = error["loc"]
        for i, segment in enumerate(loc):
            in_dict = isinstance(data, dict) and isinstance(segment, str) and segment in data
            in_list = (
                isinstance(data, list) and isinstance(segment, int) and 0 <= segment < len(data)
            )
            if in_dict or in_list:
                data = data[segment]
                path.append(segment)
            elif error["type"] == "missing" and i == len(loc) - 1:
                path.append(segment)
        kind = error["type"]
        at_key = False
        hint = ""
        if kind == "missing":
            message = f"missing required key {path[-1]!r}" if path else "missing required key"
        elif kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            message = f"unknown key {key!r}"
            hint = _unknown_key_hint(key, _allowed_keys(root, tuple(path[:-1])))
            at_key = True
        elif kind == "raorch":
            ctx = error.get("ctx") or {}
            message = str(ctx.get("message", error["msg"]))
            hint = str(ctx.get("hint", ""))
        else:
            message = _FRIENDLY.get(kind, error["msg"])
        by_path.setdefault(tuple(path), []).append((message, hint, at_key))

    problems: list[Problem] = []
    for path_key, found in by_path.items():
        messages = list(dict.fromkeys(m for m, _, _ in found))
        hints = [h for _, h, _ in found if h]
        at_key = any(k for _, _, k in found)
        if len(messages) > 1 and not at_key:
            # One value failing every branch of a union ("int | str"): one problem, not two.
            problems.append(source.problem(path_key, " or ".join(messages), "; ".join(hints)))
        else:
            for message, hint, on_key in found:
                problems.append(source.problem(path_key, message, hint, key=on_key))
    return problems


def _validate(source: Source, model: type[M]) -> M:
    try:
        return model.model_validate(source.data)
    except ValidationError as exc:
        raise InputError(_validation_problems(exc, source, model)) from None


# ---------------------------------------------------------------- playbook


def load_playbook(path: str | Path) -> Playbook:
    """Read and check a playbook file. Raises ``InputError`` with located problems."""
    return _validate(read_yaml(Path(path)), Playbook)


# ---------------------------------------------------------------- inventory


# How much of a PEM file is read to find its first block: CA bundles run to a few hundred KB.
_PEM_READ_LIMIT = 4 * 1024 * 1024


def pem_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot serve as a PEM ``kind`` file ("CERTIFICATE", "PRIVATE KEY"), or None.
    The importers check the files they name with it, as loading will."""
    if path.is_dir() and kind == "CERTIFICATE":
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(_PEM_READ_LIMIT)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    # "-----BEGIN CERTIFICATE-----"; keys also come as "RSA PRIVATE KEY", "EC PRIVATE KEY".
    if f"{kind}-----".encode() not in head or b"-----BEGIN " not in head:
        return f"holds no PEM {kind.lower()} (no '-----BEGIN ...{kind}-----' line)"
    return None


def _anchor(base: Path, value: str) -> str:
    """A path from the inventory, made absolute against the inventory's directory."""
    p = Path(value).expanduser()
    # normpath, not resolve(): tidy "a/../b" without following symlinks the user chose.
    return os.path.normpath(p if p.is_absolute() else base / p)


class _Resolver:
    def __init__(self, source: Source, inventory: Inventory, path: Path) -> None:
        self.source = source
        self.inv = inventory
        self.base = path.parent
        self.problems: list[Problem] = []
        self.reported: set[tuple[PathKey, str]] = set()
        # What is wrong with each PEM file the inventory names (None: nothing), read once
        # however many hosts share it.
        self._pem_checked: dict[tuple[str, str], str | None] = {}
        self._default_connection: Connection | None = None
        self._default_connection_done = False
        # host -> the groups that name a site and list it (in the file's order)
        self._site_groups: dict[str, list[str]] = {}
        for group, section in inventory.groups.items():
            if section.site is not None:
                for host in dict.fromkeys(section.hosts):
                    self._site_groups.setdefault(host, []).append(group)

    def fail(self, path: PathKey, message: str, hint: str = "", *, key: bool = False) -> None:
        if (path, message) in self.reported:  # a default shared by many hosts: once
            return
        self.reported.add((path, message))
        self.problems.append(self.source.problem(path, message, hint, key=key))

    # -- waves

    def waves(self) -> tuple[tuple[WaveSpec, ...], dict[str, str]]:
        hosts = list(self.inv.hosts)
        known = set(hosts)
        for group, section in self.inv.groups.items():
            for i, host in enumerate(section.hosts):
                if host not in known:
                    self.fail(
                        ("groups", group, "hosts", i),
                        f"unknown host {host!r} in group {group!r}",
                        self._close(host, hosts, "hosts"),
                    )

        wave_of: dict[str, str] = {}
        named_at: dict[str, PathKey] = {}
        members: list[list[str]] = []
        rest_index: int | None = None
        names: dict[str, int] = {}
        for w, wave in enumerate(self.inv.waves):
            if wave.name in names:
                self.fail(
                    ("waves", w, "name"),
                    f"duplicate wave name {wave.name!r} (also waves[{names[wave.name]}])",
                    "give every wave its own name",
                )
            names.setdefault(wave.name, w)
            if wave.rest:
                if rest_index is not None:
                    self.fail(
                        ("waves", w, "rest"),
                        f"a second rest wave (waves[{rest_index}] already takes the rest)",
                        "only one wave may say rest: true",
                    )
                else:
                    rest_index = w
            mine: list[str] = []
            for i, host in enumerate(wave.hosts):
                if host not in known:
                    self.fail(
                        ("waves", w, "hosts", i),
                        f"unknown host {host!r}",
                        self._close(host, hosts, "hosts"),
                    )
                else:
                    self._take(host, wave.name, ("waves", w, "hosts", i), mine, wave_of, named_at)
            for i, group in enumerate(wave.groups):
                if group not in self.inv.groups:
                    self.fail(
                        ("waves", w, "groups", i),
                        f"unknown group {group!r}",
                        self._close(group, list(self.inv.groups), "groups"),
                    )
                    continue
                for host in self.inv.groups[group].hosts:
                    if host in known:
                        self._take(
                            host, wave.name, ("waves", w, "groups", i), mine, wave_of, named_at
                        )
            members.append(mine)

        unassigned = [h for h in hosts if h not in wave_of]
        if rest_index is not None:
            rest_name = self.inv.waves[rest_index].name
            for host in unassigned:
                wave_of[host] = rest_name
                members[rest_index].append(host)
        else:
            for host in unassigned:
                self.fail(
                    ("hosts", host),
                    f"host {host!r} is in no wave",
                    "name it in a wave's hosts or groups, or add a wave with rest: true",
                    key=True,
                )

        order = {h: i for i, h in enumerate(hosts)}
        specs: list[WaveSpec] = []
        for w, wave in enumerate(self.inv.waves):
            if not members[w]:
                self.fail(
                    ("waves", w),
                    f"wave {wave.name!r} has no hosts",
                    "give it hosts, groups or rest: true (with hosts left for it), or remove it",
                )
            specs.append(
                WaveSpec(
                    name=wave.name,
                    hosts=tuple(sorted(members[w], key=order.__getitem__)),
                    max_fail_percentage=float(wave.max_fail_percentage),
                    batch=wave.batch_spec(),
                    on_gate_failure=wave.on_gate_failure,
                    skipped_counts_as_failed=wave.skipped_counts_as_failed,
                    deadline=wave.deadline,
                )
            )
        return tuple(specs), wave_of

    def _take(
        self,
        host: str,
        wave: str,
        where: PathKey,
        mine: list[str],
        wave_of: dict[str, str],
        named_at: dict[str, PathKey],
    ) -> None:
        """Put ``host`` in ``wave`` unless another reference already placed it."""
        if host in wave_of:
            if wave_of[host] == wave and where[-2] == "groups":
                return  # overlapping groups of one wave: still one wave
            first = format_path(named_at[host])
            self.fail(
                where,
                f"host {host!r} is named twice (first at {first}, wave {wave_of[host]!r})",
                "every host belongs to exactly one wave; remove one of the two",
            )
            return
        wave_of[host] = wave
        named_at[host] = where
        mine.append(host)

    @staticmethod
    def _close(name: str, candidates: Iterable[str], what: str) -> str:
        close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
        return f"did you mean {close[0]!r}?" if close else f"it must be one of the {what} defined"

    # -- connections and credentials

    def _origin(self, host: str, field: str) -> PathKey | None:
        """Where the effective value of a connection field is written, if anywhere."""
        own = self.inv.hosts[host].connection
        if own is not None and getattr(own, field) is not None:
            return ("hosts", host, "connection", field)
        if getattr(self.inv.defaults.connection, field) is not None:
            return ("defaults", "connection", field)
        return None

    @staticmethod
    def _who(host: str, where: PathKey | None) -> str:
        # A value from defaults concerns every host using it; naming one would mislead.
        return "" if where and where[0] == "defaults" else f"host {host!r}: "

    def connection(self, host: str) -> Connection | None:
        # Most hosts only take the defaults: their connection (or its problems, reported once
        # for the defaults) is the same, worked out once however many hosts share it.
        if self.inv.hosts[host].connection is None:
            if not self._default_connection_done:
                self._default_connection = self._connection(host)
                self._default_connection_done = True
            return self._default_connection
        return self._connection(host)

    def _connection(self, host: str) -> Connection | None:
        base = self.inv.defaults.connection
        own = self.inv.hosts[host].connection or ConnectionSection()

        def pick(field: str) -> Any:
            value = getattr(own, field)
            return getattr(base, field) if value is None else value

        scheme: Scheme = pick("scheme") or DEFAULT_SCHEME
        auth: AuthMethod = pick("auth") or DEFAULT_AUTH
        insecure = bool(pick("insecure"))
        cert_validation = pick("cert_validation")
        cert_validation = True if cert_validation is None else bool(cert_validation)
        ok = True
        if auth is AuthMethod.BASIC and scheme is Scheme.HTTP and not insecure:
            # Basic sends the password base64-encoded, readable by anyone on the path.
            where = self._origin(host, "auth") or ("hosts", host)
            self.fail(
                where,
                f"{self._who(host, where)}Basic authentication over plain http sends the "
                "password in clear text",
                "use https (or ntlm/kerberos), or set insecure: true to accept it explicitly",
            )
            ok = False
        if not cert_validation and scheme is Scheme.HTTPS and not insecure:
            where = self._origin(host, "cert_validation") or ("hosts", host)
            self.fail(
                where,
                f"{self._who(host, where)}cert_validation: false accepts any server certificate "
                "(anyone in the middle can pose as the host)",
                "give ca_bundle: PATH instead, or set insecure: true to accept it explicitly",
            )
            ok = False
        if auth is AuthMethod.CERTIFICATE:
            if scheme is not Scheme.HTTPS:
                self.fail(
                    self._origin(host, "auth") or ("hosts", host),
                    f"{self._who(host, self._origin(host, 'auth'))}certificate auth needs https",
                    "set scheme: https",
                )
                ok = False
            for field in ("certificate_pem", "certificate_key_pem"):
                if pick(field) is None:
                    self.fail(
                        self._origin(host, "auth") or ("hosts", host),
                        f"{self._who(host, self._origin(host, 'auth'))}auth: certificate "
                        f"needs {field}",
                        f"add {field}: PATH (relative to the inventory file)",
                    )
                    ok = False
        spn_host = pick("spn_host")
        if spn_host is not None and not auth.kerberos:
            where = self._origin(host, "spn_host") or ("hosts", host)
            self.fail(
                where,
                f"{self._who(host, where)}spn_host is used by auth: kerberos and negotiate only "
                f"(this connection uses {auth.value})",
                "remove spn_host, or set auth: kerberos (or negotiate)",
            )
            ok = False
        if not ok:
            return None
        port = pick("port")
        if own.scheme is not None and own.port is None:
            # A host that switches scheme (an XP box without an https listener) means that
            # scheme's standard port, not the port the defaults gave for the other scheme.
            port = None
        connect_timeout = pick("connect_timeout")
        operation_timeout = pick("operation_timeout")

        def path_of(field: str) -> str | None:
            value = pick(field)
            return None if value is None else _anchor(self.base, value)

        # Files the connection uses, checked now: a missing or wrong file found at run time
        # failed every host with a network-sounding error instead of one located here.
        used = []
        if scheme is Scheme.HTTPS and cert_validation:
            used.append(("ca_bundle", "CERTIFICATE"))
        if auth is AuthMethod.CERTIFICATE:
            used += [("certificate_pem", "CERTIFICATE"), ("certificate_key_pem", "PRIVATE KEY")]
        for field, kind in used:
            path = path_of(field)
            if path is None:
                continue
            problem = self._pem_problem(path, kind)
            if problem is not None:
                where = self._origin(host, field) or ("hosts", host)
                self.fail(
                    where,
                    f"{self._who(host, where)}{field} {path}: {problem}",
                    f"give the path of a PEM file with the {kind.lower()} "
                    "(relative paths are relative to the inventory file)",
                )
                ok = False
        if not ok:
            return None

        return Connection(
            scheme=scheme,
            port=int(port) if port is not None else DEFAULT_PORTS[scheme],
            auth=auth,
            cert_validation=cert_validation,
            ca_bundle=path_of("ca_bundle"),
            connect_timeout=float(connect_timeout or DEFAULT_CONNECT_TIMEOUT),
            operation_timeout=float(operation_timeout or DEFAULT_OPERATION_TIMEOUT),
            insecure=insecure,
            certificate_pem=path_of("certificate_pem"),
            certificate_key_pem=path_of("certificate_key_pem"),
            spn_host=spn_host,
        )

    def kerberos(self) -> KerberosRealm | None:
        """``defaults.kerberos``, resolved; ``defaults.connection.spn_host`` refused here (one
        SPN host name for every host is a mistake: it names one host)."""
        if self.inv.defaults.connection.spn_host is not None:
            self.fail(
                ("defaults", "connection", "spn_host"),
                "spn_host names one host's SPN and cannot be a default for every host",
                "set it under hosts.NAME.connection of the host addressed by IP or alias",
            )
        section = self.inv.defaults.kerberos
        if section is None:
            return None
        kdc = parse_kdc(section.kdc)
        assert kdc is not None  # checked by the model
        return KerberosRealm(section.realm, kdc[0], kdc[1])

    def auth(self, host: str) -> AuthMethod:
        """The host's authentication method as configured (even when its connection has
        other problems: a certificate host needs no credentials either way)."""
        own = self.inv.hosts[host].connection
        value = own.auth if own is not None and own.auth is not None else None
        return value or self.inv.defaults.connection.auth or DEFAULT_AUTH

    def site(self, host: str) -> str:
        """Where the host's work runs with workers: its own ``site``, else the site of the
        groups that list it (they must agree), else ``default``."""
        own = self.inv.hosts[host].site
        if own is not None:
            return own
        groups = self._site_groups.get(host, [])
        sites = {self.inv.groups[g].site for g in groups}
        if len(sites) > 1:
            named = ", ".join(f"{g} ({self.inv.groups[g].site})" for g in groups)
            self.fail(
                ("hosts", host),
                f"host {host!r} is in groups of different sites: {named}",
                f"give it its own site (hosts.{host}.site), which wins over its groups'",
                key=True,
            )
        site = self.inv.groups[groups[0]].site if groups else None
        return DEFAULT_SITE if site is None else site

    def _pem_problem(self, path: str, kind: str) -> str | None:
        """Why ``path`` is not a PEM file holding a ``kind`` block ("CERTIFICATE", "PRIVATE
        KEY"), or None. A directory of CA certificates (as requests accepts) is not opened."""
        key = (path, kind)
        if key not in self._pem_checked:
            self._pem_checked[key] = pem_problem(Path(path), kind)
        return self._pem_checked[key]

    def credentials(self, host: str, auth: AuthMethod | None) -> Credentials | None:
        section: CredentialsSection | None = (
            self.inv.hosts[host].credentials or self.inv.defaults.credentials
        )
        if section is None and auth is AuthMethod.CERTIFICATE:
            return None  # the certificate is the identity: no account, no password
        if section is None and auth is not None and auth.kerberos:
            return None  # the default principal of the operator's ticket cache
        if section is None:
            self.fail(
                ("hosts", host),
                f"host {host!r} has no credentials",
                f"add defaults.credentials, or credentials under hosts.{host} (auth: kerberos "
                "or negotiate can use the operator's ticket cache instead)",
                key=True,
            )
            return None
        if section.password is None:
            if auth is not None and auth.kerberos:
                # The account's ticket from the operator's ticket cache (kinit).
                return Credentials(username=section.username, password=None)
            own = self.inv.hosts[host].credentials is not None
            where: PathKey = ("hosts", host, "credentials") if own else ("defaults", "credentials")
            self.fail(
                where,
                f"{'' if not own else f'host {host!r}: '}credentials need a password reference "
                f"with auth: {auth.value if auth is not None else 'ntlm'}",
                "add password: env:NAME (or file:PATH, prompt, keyring:SERVICE); only auth: "
                "kerberos and negotiate can use the operator's ticket cache without one",
            )
            return None
        ref = parse_secret_ref(section.password)  # syntax already checked by the model
        if ref.kind is SecretKind.FILE:
            ref = SecretRef(SecretKind.FILE, _anchor(self.base, ref.target))
        return Credentials(username=section.username, password=ref)


def _position(problem: Problem) -> tuple[int, int]:
    return (problem.location.line or 0, problem.location.column or 0)


def load_inventory(path: str | Path) -> ResolvedInventory:
    """Read and check an inventory file; every default applied, every reference resolved
    (except secrets). Raises ``InputError`` with every problem found, each located."""
    file = Path(path)
    source = read_yaml(file)
    inventory = _validate(source, Inventory)
    resolver = _Resolver(source, inventory, file.absolute())
    waves, wave_of = resolver.waves()
    kerberos = resolver.kerberos()
    targets: dict[str, Target] = {}
    for host, section in inventory.hosts.items():
        connection = resolver.connection(host)
        auth = resolver.auth(host)
        credentials = resolver.credentials(host, auth)
        site = resolver.site(host)
        needs_credentials = auth is not AuthMethod.CERTIFICATE and not auth.kerberos
        if connection is None or (credentials is None and needs_credentials):
            continue
        if host not in wave_of:
            continue
        targets[host] = Target(host, section.address, connection, credentials, wave_of[host], site)
    if resolver.problems:
        raise InputError(sorted(resolver.problems, key=_position))
    return ResolvedInventory(
        path=os.path.normpath(file.absolute()),
        playbook=_anchor(resolver.base, inventory.playbook) if inventory.playbook else None,
        domains=inventory.domains,
        targets=targets,
        waves=waves,
        playbook_location=source.location(("playbook",)) if inventory.playbook else None,
        kerberos=kerberos,
    )


def resolve_playbook_path(inventory: ResolvedInventory, cli_value: str | Path | None) -> Path:
    """The playbook to use: ``--playbook`` when given (relative to the working directory, like
    any command-line path), else the inventory's ``playbook:`` (relative to the inventory)."""
    if cli_value is not None and str(cli_value) != "":
        return Path(cli_value)
    if inventory.playbook is None:
        raise InputError(
            [
                Problem(
                    Location(inventory.path, path="playbook"),
                    "no playbook given",
                    "add playbook: PATH to the inventory (relative to it), or pass --playbook PATH",
                )
            ]
        )
    found = Path(inventory.playbook)
    if not found.is_file():
        where = inventory.playbook_location or Location(inventory.path, path="playbook")
        raise InputError(
            [
                Problem(
                    where,
                    f"playbook file {found} not found",
                    "playbook: is relative to the inventory file; fix it or pass --playbook",
                )
            ]
        )
    return found
