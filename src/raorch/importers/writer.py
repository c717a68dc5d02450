"""Write an ``InventoryDraft`` as raorch's inventory YAML (docs/inventory.md), with comments.

The values most hosts share go to ``defaults``; a host writes only what differs. Every host
gets a comment saying where it came from (file:line, or its DN). Before the file is put in
place, the text is loaded back with the real loader (``load_inventory``) from a temporary file
next to the output, and every host's address, connection, credentials and wave are compared
with the draft: an import either writes a file ``raorch validate`` accepts, meaning what the
source meant, or writes nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from raorch.importers.draft import DraftConnection, DraftHost, InventoryDraft
from raorch.models.errors import InputError, Location, Problem, RaorchError, RefusedError
from raorch.models.inventory import Connection, ResolvedInventory, SecretKind, SecretRef
from raorch.models.load import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_PORTS,
    load_inventory,
)

_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


class ImportBug(RaorchError):
    """The written inventory did not load back as the draft: a bug in raorch, not in the input."""


def _plain_ok(text: str) -> bool:
    if not text or not (text[0].isascii() and (text[0].isalnum() or text[0] == "_")):
        return False
    if not all(c.isascii() and (c.isalnum() or c in "_.-/") for c in text):
        return False
    # "yes", "null", "1e3", "0x10" would not read back as the string written.
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == _STR_TAG)


def _quoted(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable() and not 0xD800 <= code <= 0xDFFF and code != 0xFEFF:
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def scalar(value: object) -> str:
    """One YAML scalar that reads back as ``value`` (str, int, float or bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return text if _plain_ok(text) else _quoted(text)


def _comment(text: str) -> str:
    # One line, whatever the source holds (a DN or a group name may carry a newline).
    flat = " ".join(text.split())
    return f"# {flat}" if flat else ""


def _flow(items: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"


def _path_text(path: str, base: Path) -> str:
    """A path as written in the inventory: relative when inside the inventory's directory,
    else absolute (the loader anchors relative paths at the inventory's directory)."""
    absolute = os.path.normpath(path)
    try:
        relative = os.path.relpath(absolute, base)
    except ValueError:
        return absolute
    return absolute if relative.startswith("..") else relative


def _ref_text(ref: SecretRef, base: Path) -> str:
    if ref.kind is SecretKind.FILE:
        return f"file:{_path_text(ref.target, base)}"
    return str(ref)


def _mode(values: list[Any]) -> Any:
    # Most common; among equals, the first met (Counter keeps insertion order).
    return Counter(values).most_common(1)[0][0]


_CONNECTION_FIELDS = [f.name for f in fields(DraftConnection)]
# What the loader assumes when a field is not written (raorch.models.load).
_BUILT_IN: dict[str, Any] = {
    "cert_validation": True,
    "insecure": False,
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "operation_timeout": DEFAULT_OPERATION_TIMEOUT,
}
_OPTIONAL_PATHS = ("ca_bundle", "certificate_pem", "certificate_key_pem")
_ORDER = (
    "scheme",
    "port",
    "auth",
    "cert_validation",
    "ca_bundle",
    "insecure",
    "connect_timeout",
    "operation_timeout",
    "certificate_pem",
    "certificate_key_pem",
)


def _defaults(hosts: tuple[DraftHost, ...]) -> dict[str, Any]:
    """The connection values ``defaults`` carries: the most common of each field (paths only
    when every host shares them: a host cannot unset a default path)."""
    if not hosts:
        return {}
    out: dict[str, Any] = {}
    for name in _CONNECTION_FIELDS:
        values = [getattr(h.connection, name) for h in hosts]
        if name in _OPTIONAL_PATHS:
            if values[0] is not None and all(v == values[0] for v in values):
                out[name] = values[0]
        elif name != "port":
            out[name] = _mode(values)
    same_scheme = [h.connection.port for h in hosts if h.connection.scheme == out["scheme"]]
    out["port"] = _mode(same_scheme) if same_scheme else DEFAULT_PORTS[out["scheme"]]
    return out


def _overrides(host: DraftHost, defaults: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = {}
    conn = host.connection
    for name in _ORDER:
        value = getattr(conn, name)
        if name in _OPTIONAL_PATHS:
            if value is not None and name not in defaults:
                own[name] = value
        elif name == "port":
            # A host that sets its scheme gets that scheme's standard port unless it sets its
            # own (docs/inventory.md): write the port whenever the scheme is written.
            if conn.scheme != defaults["scheme"] or value != defaults["port"]:
                own[name] = value
        elif value != defaults[name]:
            own[name] = value
    return own


def _connection_items(values: dict[str, Any], base: Path) -> list[tuple[str, str]]:
    items = []
    for name in _ORDER:
        if name not in values:
            continue
        value = values[name]
        if name in _OPTIONAL_PATHS:
            items.append((name, scalar(_path_text(value, base))))
        elif hasattr(value, "value"):  # an enum
            items.append((name, scalar(value.value)))
        else:
            items.append((name, scalar(value)))
    return items


def _credential_key(host: DraftHost) -> tuple[str, str] | None:
    if host.username is None or host.password is None:
        return None
    return host.username, str(host.password)


def render(draft: InventoryDraft, out_path: Path) -> str:
    """The inventory YAML text for ``draft``, to be written at ``out_path``."""
    base = out_path.absolute().parent
    lines: list[str] = [_comment(line) for line in draft.header]
    if draft.playbook is not None:
        lines.append(f"playbook: {scalar(_path_text(draft.playbook, base))}")
    domains = "[" + ", ".join(scalar(d) for d in draft.domains) + "]"
    said = f"  {_comment(draft.domains_origin)}" if draft.domains_origin else ""
    lines.append(f"domains: {domains}{said}")

    defaults = _defaults(draft.hosts)
    keyed = [k for k in (_credential_key(h) for h in draft.hosts) if k is not None]
    default_account = _mode(keyed) if keyed else None
    lines.append("")
    lines.append("defaults:")
    lines.append("  connection:")
    origins = _common_origins(draft.hosts, defaults)
    for name, text in _connection_items(defaults, base):
        if name in _BUILT_IN and defaults[name] == _BUILT_IN[name]:
            continue  # the loader's own default: less to read
        said = f"  {_comment(origins[name])}" if name in origins else ""
        lines.append(f"    {name}: {text}{said}")
    if default_account is not None:
        host = next(h for h in draft.hosts if _credential_key(h) == default_account)
        assert host.password is not None
        lines.append("  credentials:")
        lines.append(f"    username: {scalar(host.username)}")
        lines.append(f"    password: {scalar(_ref_text(host.password, base))}")
    if draft.groups:
        lines.append("")
        lines.append("groups:")
        for group in draft.groups:
            said = "; ".join(str(x) for x in (group.origin, group.note) if x)
            lines.append(f"  {scalar(group.name)}:" + (f"  {_comment(said)}" if said else ""))
            lines.append("    hosts:")
            lines.extend(f"      - {scalar(name)}" for name in group.hosts)

    lines.append("")
    lines.append("hosts:")
    for host in draft.hosts:
        own = _overrides(host, defaults)
        items = [("address", scalar(host.address))]
        if own:
            items.append(("connection", _flow(_connection_items(own, base))))
        key = _credential_key(host)
        if key is not None and key != default_account:
            assert host.password is not None
            items.append(
                (
                    "credentials",
                    _flow(
                        [
                            ("username", scalar(host.username)),
                            ("password", scalar(_ref_text(host.password, base))),
                        ]
                    ),
                )
            )
        about = [str(host.origin), *host.notes]
        about += [
            f"{name} from {host.field_origins[name]}" for name in own if name in host.field_origins
        ]
        lines.append(f"  {_comment('; '.join(about))}")
        lines.append(f"  {scalar(host.name)}: {_flow(items)}")

    lines.append("")
    lines.append("waves:")
    for wave in draft.waves:
        lines.append(
            f"  - name: {scalar(wave.name)}" + (f"  {_comment(wave.note)}" if wave.note else "")
        )
        if wave.rest:
            lines.append("    rest: true")
        else:
            lines.append("    hosts:")
            lines.extend(f"      - {scalar(name)}" for name in wave.hosts)
        lines.append(f"    max_fail_percentage: {scalar(float(wave.max_fail_percentage))}")
    return "\n".join(lines) + "\n"


def _common_origins(hosts: tuple[DraftHost, ...], defaults: dict[str, Any]) -> dict[str, str]:
    """For each defaults field that every host took from one place: where."""
    out = {}
    for name in defaults:
        origins = {str(h.field_origins.get(name, "")) for h in hosts}
        if len(origins) == 1 and "" not in origins:
            out[name] = origins.pop()
    return out


# ---------------------------------------------------------------- checking and writing


def _expected_connection(conn: DraftConnection) -> Connection:
    def norm(path: str | None) -> str | None:
        return None if path is None else os.path.normpath(path)

    return Connection(
        scheme=conn.scheme,
        port=conn.port,
        auth=conn.auth,
        cert_validation=conn.cert_validation,
        ca_bundle=norm(conn.ca_bundle),
        connect_timeout=float(conn.connect_timeout),
        operation_timeout=float(conn.operation_timeout),
        insecure=conn.insecure,
        certificate_pem=norm(conn.certificate_pem),
        certificate_key_pem=norm(conn.certificate_key_pem),
    )


def compare(draft: InventoryDraft, loaded: ResolvedInventory) -> list[str]:
    """What differs between the draft and the inventory loaded back (empty: nothing)."""
    out: list[str] = []
    names = [h.name for h in draft.hosts]
    if list(loaded.targets) != names:
        out.append("the hosts differ")
    wave_of = {name: w.name for w in draft.waves for name in w.hosts}
    rest = next((w.name for w in draft.waves if w.rest), None)
    for host in draft.hosts:
        target = loaded.targets.get(host.name)
        if target is None:
            continue
        if target.address != host.address:
            out.append(f"host {host.name}: address")
        if target.connection != _expected_connection(host.connection):
            out.append(f"host {host.name}: connection")
        if host.username is not None:
            creds = target.credentials
            ref = host.password
            if ref is not None and ref.kind is SecretKind.FILE:
                ref = SecretRef(SecretKind.FILE, os.path.normpath(ref.target))
            if creds is None or creds.username != host.username or creds.password != ref:
                out.append(f"host {host.name}: credentials")
        if target.wave != wave_of.get(host.name, rest):
            out.append(f"host {host.name}: wave")
    return out


def write_inventory(
    draft: InventoryDraft,
    out_path: Path,
    *,
    force: bool = False,
    render_text: Callable[[InventoryDraft, Path], str] = render,
) -> ResolvedInventory:
    """Render, load back, compare, then put the file in place (atomically). Nothing is written
    when the output exists (unless ``force``) or when the text does not load back as the draft.
    """
    if not draft.hosts:
        raise InputError(
            [
                Problem(
                    Location(str(out_path)),
                    "no host to write: the source gave no host raorch can reach over WinRM",
                    "see the warnings above for the hosts left out and why",
                )
            ]
        )
    if out_path.exists() and not force:
        raise RefusedError(
            f"{out_path} already exists; nothing was written",
            "choose another --output, or pass --force to replace it",
        )
    if out_path.is_dir():
        raise InputError([Problem(Location(str(out_path)), "is a directory", "give a file name")])
    text = render_text(draft, out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise InputError(
            [
                Problem(
                    Location(str(out_path)),
                    f"cannot write here: {exc.strerror}",
                    "check the directory exists and is writable",
                )
            ]
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            loaded = load_inventory(tmp)
        except InputError as exc:
            rejected = out_path.with_name(out_path.name + ".rejected")
            os.replace(tmp, rejected)
            raise ImportBug(
                "the inventory raorch produced does not load back ("
                + "; ".join(f"{p.location.line}: {p.message}" for p in exc.problems)
                + f"); it is kept as {rejected}",
                "this is a bug in raorch: please report it with the source file",
            ) from None
        differences = compare(draft, loaded)
        if differences:
            raise ImportBug(
                "the inventory raorch produced does not load back as imported ("
                + ", ".join(differences[:5])
                + ")",
                "this is a bug in raorch: please report it with the source file",
            )
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return load_inventory(out_path)
