"""Reading an Ansible static inventory: INI or YAML, plus ``group_vars/`` and ``host_vars/``.

The shapes are those of Ansible's own plugins (ansible/ansible, lib/ansible/plugins/inventory/
ini.py and yaml.py; docs: ansible-documentation, docs/docsite/rst/inventory_guide/
intro_inventory.rst), read here into typed values that remember the file and line of every
host, group and variable:

- INI: ``[group]`` sections of host lines (``name [key=value ...]``, values read as Python
  literals, ``#``/``;`` comments), ``[group:vars]`` (``key=value``, one per line) and
  ``[group:children]``; lines before the first section are ungrouped hosts.
- YAML (also JSON): top-level groups (usually ``all``), each with ``hosts``, ``vars`` and
  ``children``; a host's mapping holds its variables.
- Host patterns in both: ``www[01:50].example.com``, ``www[01:50:2]``, ``db-[a:f]``, and a
  port after the name (``badwolf.example.com:5309``) which becomes ``ansible_port``.
- ``group_vars/NAME[.yml|.yaml|.json]`` (or a directory of such files) and ``host_vars/...``
  next to the inventory file, as Ansible's ``host_group_vars`` plugin reads them.

Variables merge as Ansible merges them (intro_inventory.rst, "How variables are merged", and
the variable precedence list): the inventory file's group variables (``all`` first, then parent
groups before children, groups of one level in ``ansible_group_priority`` then name order), then
``group_vars/all``, then the other ``group_vars/`` files in the same order, then the host's own
variables, then ``host_vars/``.

Vault-encrypted files are refused (the inventory) or left unread with a notice (a vars file);
a ``!vault`` value is kept as ``Vaulted`` and never decrypted.
"""

from __future__ import annotations

import ast
import difflib
import re
import shlex
import string
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raorch.importers.draft import Notice
from raorch.models.errors import InputError, Location, Problem

VAULT_HEADER = "$ANSIBLE_VAULT;"
YAML_SUFFIXES = (".yml", ".yaml", ".json")
INI_SUFFIXES = (".ini",)
# The implicit groups every Ansible inventory has (intro_inventory.rst, "Default groups").
ALL = "all"
UNGROUPED = "ungrouped"

# A YAML alias re-uses a node: bound what aliases may add (as raorch.models.yamlsource does).
_MAX_ALIAS_VALUES = 100_000
_MAX_RANGE_HOSTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Vaulted:
    """A value encrypted with Ansible Vault (``!vault``): never decrypted, never shown."""


@dataclass(frozen=True, slots=True)
class Var:
    value: Any  # str, int, float, bool, None, list, dict, or Vaulted
    location: Location
    scope: str  # "host ws01", "[web:vars]", "group web vars"; "" in a group_vars/ file


@dataclass(slots=True)
class Host:
    name: str
    location: Location  # first definition
    vars: dict[str, Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # in the order it joined them


@dataclass(slots=True)
class Group:
    name: str
    location: Location | None
    vars: dict[str, Var] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class AnsibleInventory:
    file: str
    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Var]] = field(default_factory=dict)  # group_vars/
    host_vars: dict[str, dict[str, Var]] = field(default_factory=dict)  # host_vars/
    notices: list[Notice] = field(default_factory=list)

    # -- building

    def group(self, name: str, location: Location | None) -> Group:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = Group(name, location)
        elif found.location is None:
            found.location = location
        return found

    def add_host(self, name: str, group: str, location: Location) -> Host:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name, location)
        target = self.group(group, None)
        if name not in target.hosts:
            target.hosts.append(name)
        if group not in host.groups:
            host.groups.append(group)
        return host

    def add_child(self, parent: str, child: str, location: Location) -> None:
        p, c = self.group(parent, None), self.group(child, None)
        if child == parent or child in self.ancestors(parent):
            raise InputError(
                [
                    Problem(
                        location,
                        f"group {child!r} as a child of {parent!r} makes a loop "
                        "(a group would contain itself)",
                        "Ansible refuses this too: remove one of the two links",
                    )
                ]
            )
        if child not in p.children:
            p.children.append(child)
        if parent not in c.parents:
            c.parents.append(parent)

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents) if name in self.groups else []
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.groups[g].parents)
        return seen

    def reconcile(self) -> None:
        """As Ansible does after parsing: groups without a parent belong to ``all``, hosts in
        no group but ``all`` belong to ``ungrouped``."""
        self.group(ALL, None)
        for name, group in list(self.groups.items()):
            if name != ALL and not group.parents:
                group.parents.append(ALL)
                self.groups[ALL].children.append(name)
        for host in self.hosts.values():
            others = [g for g in host.groups if g not in (ALL, UNGROUPED)]
            if others and UNGROUPED in host.groups:
                # Listed before the first section and in a group too: not ungrouped.
                host.groups.remove(UNGROUPED)
                self.groups[UNGROUPED].hosts.remove(host.name)
            if not others and UNGROUPED not in host.groups:
                ungrouped = self.group(UNGROUPED, None)
                if not ungrouped.parents:
                    ungrouped.parents.append(ALL)
                    self.groups[ALL].children.append(UNGROUPED)
                ungrouped.hosts.append(host.name)
                host.groups.append(UNGROUPED)

    # -- reading

    def members(self, name: str) -> set[str]:
        """Every host of a group, its descendants' included."""
        out: set[str] = set()
        seen: set[str] = set()
        todo = [name]
        while todo:
            g = todo.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            out.update(self.groups[g].hosts)
            todo.extend(self.groups[g].children)
        return out

    def depth(self, name: str) -> int:
        """Ansible's group depth: the longest chain of parents up to ``all`` (``all`` is 0)."""
        memo: dict[str, int] = {}

        def walk(g: str) -> int:
            if g == ALL or g not in self.groups:
                return 0
            if g not in memo:
                memo[g] = 0  # loops were refused when linking; this only guards recursion
                memo[g] = 1 + max((walk(p) for p in self.groups[g].parents), default=0)
            return memo[g]

        return walk(name)

    def host_groups(self, host: str) -> set[str]:
        """Every group the host is in, directly or through children."""
        direct = self.hosts[host].groups
        out = set(direct)
        for g in direct:
            out |= self.ancestors(g)
        out.add(ALL)
        return out

    def _ordered(self, groups: set[str]) -> list[str]:
        def priority(g: str) -> int:
            var = self.groups[g].vars.get("ansible_group_priority") if g in self.groups else None
            try:
                return int(var.value) if var is not None else 1
            except (TypeError, ValueError):
                return 1

        return sorted(groups, key=lambda g: (self.depth(g), priority(g), g))

    def effective_vars(self, host: str) -> dict[str, Var]:
        """The host's variables after Ansible's merge (see the module's docstring)."""
        out: dict[str, Var] = {}
        order = self._ordered(self.host_groups(host))
        for g in order:
            if g in self.groups:
                out.update(self.groups[g].vars)
        out.update(self.group_vars.get(ALL, {}))
        for g in order:
            if g != ALL:
                out.update(self.group_vars.get(g, {}))
        out.update(self.hosts[host].vars)
        out.update(self.host_vars.get(host, {}))
        return out


# ---------------------------------------------------------------- host patterns


def _fail(location: Location, message: str, hint: str = "") -> InputError:
    return InputError([Problem(location, message, hint)])


def expand_range(pattern: str, location: Location) -> list[str]:
    """``www[01:50:2].example.com`` -> names (Ansible's ``expand_hostname_range``: numeric or
    single-letter bounds, an optional step, zero-padding kept, several ranges)."""
    if "[" not in pattern:
        return [pattern]
    head, _, rest = pattern.partition("[")
    inner, closed, tail = rest.partition("]")
    if not closed:
        raise _fail(location, f"host range {pattern!r} has no closing ']'", "write [BEGIN:END]")
    bounds = inner.split(":")
    if len(bounds) not in (2, 3):
        raise _fail(
            location,
            f"host range [{inner}] must be begin:end or begin:end:step",
            "e.g. www[01:50].example.com",
        )
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise _fail(location, f"host range [{inner}] has no end value", "e.g. [01:50]")
    try:
        step = int(step_text)
    except ValueError:
        raise _fail(location, f"host range step {step_text!r} is not a number", "") from None
    if step < 1:
        raise _fail(location, f"host range step {step} must be at least 1", "")
    letters = string.ascii_letters
    if begin in letters and end in letters and len(begin) == len(end) == 1:
        i, j = letters.index(begin), letters.index(end)
        if i > j:
            raise _fail(location, f"host range [{inner}]: begin is after end", "")
        seq = list(letters[i : j + 1 : step])
    else:
        try:
            b, e = int(begin), int(end)
        except ValueError:
            raise _fail(
                location,
                f"host range [{inner}] is neither numeric nor single letters",
                "e.g. [01:50] or [a:f]",
            ) from None
        if begin.startswith("0") and len(begin) > 1 and len(begin) != len(end):
            raise _fail(
                location,
                f"host range [{inner}]: begin and end must have the same width when padded",
                "e.g. [01:50], not [01:100]",
            )
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if e < b:
            return []  # Ansible's range() yields nothing
        if (e - b) // step + 1 > _MAX_RANGE_HOSTS:
            raise _fail(location, f"host range [{inner}] is too large", "")
        seq = [str(n).zfill(width) for n in range(b, e + 1, step)]
    out: list[str] = []
    for item in seq:
        out.extend(expand_range(f"{head}{item}{tail}", location))
        if len(out) > _MAX_RANGE_HOSTS:
            raise _fail(location, f"host pattern {pattern!r} is too large", "")
    return out


_BRACKETED_V6 = re.compile(r"\[([0-9A-Fa-f:.]+(?:%[\w.]+)?)\](?::(\d+))?\Z")


def split_port(pattern: str) -> tuple[str, int | None]:
    """``name:port`` -> (name, port), as Ansible's ``parse_address``: ``[v6]:port``, a bare IPv6
    address (several colons outside ranges) has no port."""
    m = _BRACKETED_V6.match(pattern)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    if outside.count(":") == 1:
        name, _, port = pattern.rpartition(":")
        if port.isdigit() and name:
            return name, int(port)
    return pattern, None


def expand_pattern(pattern: str, location: Location) -> tuple[list[str], int | None]:
    name, port = split_port(pattern)
    if pattern.endswith(":") and port is None:
        raise _fail(
            location,
            f"host pattern {pattern!r} ends in ':'",
            "':' is reserved for a port: write name:PORT or the name alone",
        )
    if name.strip() == "---":
        raise _fail(
            location, "'---' is not a host: this looks like a YAML file", "use --format yaml"
        )
    return expand_range(name, location), port


# ---------------------------------------------------------------- INI


_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:[#;].*)?$")


def literal(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if value is ... or isinstance(value, complex | bytes):
        return text
    if isinstance(value, tuple | set):
        return list(value)
    return value


def read_ini(text: str, file: str) -> AnsibleInventory:
    reader = _IniReader(file)
    for number, raw in enumerate(text.splitlines(), 1):
        reader.line(raw.strip(), Location(file, number))
    problems = reader.problems + _undefined_groups(reader.pending, reader.declared)
    if problems:
        raise InputError(problems)
    return reader.inv


class _IniReader:
    """An INI inventory read line by line, its problems gathered to be reported together.

    A group may be named (by ``[NAME:vars]``, or under ``[PARENT:children]``) before its own
    section defines it: ``pending`` keeps the first such place, ``_undefined_groups`` reports
    the groups never defined.
    """

    def __init__(self, file: str) -> None:
        self.inv = AnsibleInventory(file)
        self.problems: list[Problem] = []
        # group -> (state, where, parents)
        self.pending: dict[str, tuple[str, Location, list[str]]] = {}
        self.group, self.state = UNGROUPED, "hosts"
        self.declared: set[str] = {ALL, UNGROUPED}  # always there (intro_inventory.rst)

    def line(self, line: str, here: Location) -> None:
        if not line or line[0] in "#;":
            return
        m = _SECTION.match(line)
        if m:
            self.section(m.group(1), m.group(2) or "hosts", here)
        elif line.startswith("[") and line.endswith("]"):
            self.problems.append(
                Problem(
                    here,
                    f"invalid section {line!r}",
                    "no spaces inside the brackets: [NAME], [NAME:vars] or [NAME:children]",
                )
            )
            self.state = "skip"
        else:
            try:
                self.content(line, here)
            except InputError as exc:
                self.problems.extend(exc.problems)

    def section(self, group: str, state: str, here: Location) -> None:
        self.group, self.state = group, state
        if state not in ("hosts", "children", "vars"):
            self.problems.append(
                Problem(
                    here,
                    f"section [{group}:{state}] has an unknown type {state!r}",
                    "a section is [NAME], [NAME:vars] or [NAME:children]",
                )
            )
            self.state = "skip"
            return
        self.inv.group(group, here if state != "vars" else None)
        if state != "vars":
            self.declared.add(group)
            self.pending.pop(group, None)
        elif group not in self.declared and group not in self.pending:
            self.pending[group] = ("vars", here, [])

    def content(self, line: str, here: Location) -> None:
        """A line of the current section: a host, a variable or a child group."""
        if self.state == "hosts":
            _ini_host_line(self.inv, line, self.group, here)
        elif self.state == "vars":
            key, eq, value = line.partition("=")
            if not eq or not key.strip():
                raise _fail(here, "expected key=value in a :vars section", "one variable per line")
            scope = f"[{self.group}:vars]"
            self.inv.group(self.group, None).vars[key.strip()] = Var(
                literal(value.strip()), here, scope
            )
        elif self.state == "children":
            gm = _GROUP_NAME.match(line)
            if not gm:
                raise _fail(here, f"expected a group name, got {line!r}", "one group per line")
            child = gm.group(1)
            if child not in self.declared:
                entry = self.pending.setdefault(child, ("children", here, []))
                entry[2].append(self.group)
            self.inv.add_child(self.group, child, here)


def _undefined_groups(
    pending: dict[str, tuple[str, Location, list[str]]], declared: set[str]
) -> list[Problem]:
    """A problem for each group named but never defined by a section of its own."""
    problems: list[Problem] = []
    for name, (kind, where, parents) in pending.items():
        if name in declared:
            continue
        if kind == "vars":
            problems.append(
                Problem(
                    where,
                    f"section [{name}:vars] is for a group that is never defined",
                    f"add a [{name}] or [{name}:children] section, or fix the name",
                )
            )
        else:
            problems.append(
                Problem(
                    where,
                    f"section [{parents[-1]}:children] names group {name!r}, which is never "
                    "defined",
                    f"add a [{name}] section (even empty), or fix the name"
                    + _did_you_mean(name, declared),
                )
            )
    return problems


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _ini_host_line(inv: AnsibleInventory, line: str, group: str, here: Location) -> None:
    try:
        tokens = shlex.split(line, comments=True, posix=True)
    except ValueError as exc:
        raise _fail(here, f"cannot read this host line: {exc}", "check the quotes") from None
    if not tokens:
        return
    names, port = expand_pattern(tokens[0], here)
    variables: dict[str, Var] = {}
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise _fail(
                here,
                f"expected key=value after the host name, got {token!r}",
                "host variables are written name key=value key2=value2",
            )
        variables[key] = Var(literal(value), here, "")
    for name in names:
        host = inv.add_host(name, group, here)
        if port is not None:
            host.vars["ansible_port"] = Var(port, here, f"host {name}")
        for key, var in variables.items():
            host.vars[key] = Var(var.value, here, f"host {name}")


# ---------------------------------------------------------------- YAML


class MarkedMap(dict[str, Any]):
    """A YAML mapping that remembers the line of each key and its own line."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class _Builder:
    def __init__(self, file: str, notices: list[Notice]) -> None:
        self.file = file
        self.notices = notices
        self.constructor = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.expanded = 0
        self.problems: list[Problem] = []

    def here(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, active: frozenset[int] = frozenset()) -> Any:
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > _MAX_ALIAS_VALUES:
                raise _fail(self.here(node), "YAML aliases expand to too many values", "")
        self.seen.add(id(node))
        if id(node) in active:
            raise _fail(self.here(node), "a YAML alias refers to itself", "remove it")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, active | {id(node)})
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, active | {id(node)}) for item in node.value]
        assert isinstance(node, yaml.ScalarNode)
        if node.tag == "!vault":
            return Vaulted()
        if node.tag == "!unsafe":
            return str(node.value)
        if node.tag.startswith("!"):
            raise _fail(
                self.here(node),
                f"YAML tag {node.tag} is not one raorch can read",
                "Ansible inventories use !vault and !unsafe only; remove the tag",
            )
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _fail(self.here(node), f"cannot read this value: {exc}", "") from None

    def _mapping(self, node: yaml.MappingNode, active: frozenset[int]) -> MarkedMap:
        out = MarkedMap(node.start_mark.line + 1)
        explicit = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        merges = [v for k, v in node.value if k.tag == "tag:yaml.org,2002:merge"]
        for merge in merges:  # "<<: *base" (or a list of them): under the explicit keys
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for src in sources:
                built = self.build(src, active)
                if not isinstance(built, MarkedMap):
                    raise _fail(self.here(src), "a merge key (<<) needs a mapping", "")
                for key, value in built.items():
                    out[key] = value
                    out.key_lines[key] = built.key_lines.get(key, built.line)
        first: dict[str, int] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(self.here(key_node), "a key must be a plain string", "")
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                # Ansible's YAML loader warns and keeps the last one; so does this import.
                self.notices.append(
                    Problem(
                        Location(self.file, line),
                        f"duplicate key {key!r} (first at line {first[key]}): the last one is "
                        "used, as Ansible does",
                        "remove one of them",
                    )
                )
            first[key] = line
            out[key] = self.build(value_node, active)
            out.key_lines[key] = line
        return out


def parse_yaml_text(text: str, file: str, notices: list[Notice]) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise _fail(
            Location(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None),
            f"YAML syntax error: {what}",
            "fix the YAML here (indentation, quotes, colons)",
        ) from None
    except yaml.YAMLError as exc:
        raise _fail(Location(file), f"not readable as YAML: {exc}", "") from None
    if node is None:
        return None
    try:
        return _Builder(file, notices).build(node)
    except RecursionError:
        raise _fail(Location(file), "the YAML is nested too deeply", "") from None


def read_yaml_inventory(text: str, file: str) -> AnsibleInventory:
    inv = AnsibleInventory(file)
    data = parse_yaml_text(text, file, inv.notices)
    if data is None:
        raise _fail(Location(file, 1), "the inventory is empty", "list at least one host")
    if not isinstance(data, MarkedMap):
        raise _fail(
            Location(file, 1),
            "a YAML inventory is a mapping of groups (usually all:)",
            "see Ansible's YAML inventory format: all: {hosts: ..., children: ...}",
        )
    if "plugin" in data:
        raise _fail(
            Location(file, data.key_lines.get("plugin")),
            f"this is the configuration of the inventory plugin {data['plugin']!r}, not a "
            "static inventory",
            "write the hosts it finds to a file: ansible-inventory -i FILE --list --yaml "
            "--output hosts.yml, then import that",
        )
    problems: list[Problem] = []
    for name, body in data.items():
        try:
            _yaml_group(inv, name, body, Location(file, data.key_lines.get(name)), [])
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    return inv


def _yaml_group(
    inv: AnsibleInventory, name: str, body: Any, where: Location, parents: list[str]
) -> None:
    if body is not None and not isinstance(body, MarkedMap):
        inv.notices.append(
            Problem(
                where,
                f"group {name!r} is not a mapping: skipped, as Ansible skips it",
                "a group is a mapping with hosts:, vars: and children:",
            )
        )
        return
    inv.group(name, where)
    for parent in parents:
        inv.add_child(parent, name, where)
    if body is None:
        return
    for key, value in body.items():
        at = Location(inv.file, body.key_lines.get(key))
        if key not in ("hosts", "vars", "children"):
            inv.notices.append(
                Problem(
                    at,
                    f"key {key!r} in group {name!r} is not hosts, vars or children: skipped, as "
                    "Ansible skips it",
                    "indent it under hosts: or vars: if it was meant to be one",
                )
            )
            continue
        if isinstance(value, str) and key in ("hosts", "children"):
            value = {value: None}  # "hosts: test5" is one host, as Ansible reads it
            keyed: dict[str, int] = {}
        elif value is None:
            continue
        elif isinstance(value, MarkedMap):
            keyed = value.key_lines
        else:
            raise _fail(
                at,
                f"{key} of group {name!r} must be a mapping",
                f"write {key}: followed by indented name: lines",
            )
        for item, content in value.items():
            item_at = Location(inv.file, keyed.get(item, at.line))
            if key == "vars":
                inv.group(name, None).vars[item] = Var(content, item_at, f"group {name} vars")
            elif key == "children":
                _yaml_group(inv, item, content, item_at, [name])
            else:
                _yaml_host(inv, name, item, content, item_at)


def _yaml_host(inv: AnsibleInventory, group: str, pattern: str, body: Any, at: Location) -> None:
    names, port = expand_pattern(pattern, at)
    if body is not None and not isinstance(body, MarkedMap):
        raise _fail(
            at,
            f"host {pattern!r}: its variables must be a mapping",
            "write the host as 'name:' followed by indented key: value lines",
        )
    for name in names:
        host = inv.add_host(name, group, at)
        if port is not None:
            host.vars["ansible_port"] = Var(port, at, f"host {name}")
        for key, value in (body or {}).items():
            line = body.key_lines.get(key, at.line) if body is not None else at.line
            host.vars[key] = Var(value, Location(inv.file, line), f"host {name}")


# ---------------------------------------------------------------- files


def _is_vaulted(raw: bytes) -> bool:
    return raw.lstrip().startswith(VAULT_HEADER.encode())


def _read_text(path: Path, shown: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(Location(shown), "file not found", "check the path") from None
    except IsADirectoryError:
        raise _fail(
            Location(shown),
            "is a directory: raorch imports one inventory file",
            "give the inventory file itself (its group_vars/ and host_vars/ are read from "
            "beside it)",
        ) from None
    except OSError as exc:
        raise _fail(
            Location(shown), f"cannot read it: {exc.strerror}", "check permissions"
        ) from None
    if _is_vaulted(raw):
        raise _fail(
            Location(shown, 1),
            "the file is encrypted with Ansible Vault; raorch does not decrypt vault files",
            "import the plain inventory that lists the hosts: keep only secrets in vaulted "
            "vars files (raorch never copies passwords anyway)",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(Location(shown, line), "not UTF-8 text", "save the file as UTF-8") from None


def detect_format(path: Path, text: str) -> str:
    """``yaml`` or ``ini``: by extension (as Ansible's plugins choose), else by content."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in INI_SUFFIXES:
        return "ini"
    # No telling extension: Ansible tries its YAML plugin, then the INI one.
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "ini"
    if isinstance(data, dict) and all(isinstance(v, dict | None) for v in data.values()):
        return "yaml"
    return "ini"


def read_inventory(path: Path, fmt: str | None = None) -> AnsibleInventory:
    """Read an Ansible inventory file and the ``group_vars/`` and ``host_vars/`` beside it."""
    shown = str(path)
    text = _read_text(path, shown)
    chosen = fmt or detect_format(path, text)
    inv = read_yaml_inventory(text, shown) if chosen == "yaml" else read_ini(text, shown)
    inv.reconcile()
    if not inv.hosts:
        raise _fail(Location(shown), "the inventory lists no host", "is this the right file?")
    base = path.parent
    for group in inv.groups:
        found = _vars_for(base / "group_vars", group, inv.notices)
        if found:
            inv.group_vars[group] = found
    for host in inv.hosts:
        found = _vars_for(base / "host_vars", host, inv.notices)
        if found:
            inv.host_vars[host] = found
    return inv


def _vars_files(folder: Path, name: str) -> Iterator[Path]:
    """The files Ansible's host_group_vars plugin reads for ``name`` in ``folder``."""
    for candidate in [folder / name, *(folder / f"{name}{s}" for s in YAML_SUFFIXES)]:
        if candidate.is_file():
            yield candidate
        elif candidate.is_dir():
            yield from _dir_files(candidate)


def _dir_files(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir():
            yield from _dir_files(entry)
        elif entry.suffix in ("", *YAML_SUFFIXES):
            yield entry


def _vars_for(folder: Path, name: str, notices: list[Notice]) -> dict[str, Var]:
    out: dict[str, Var] = {}
    if not folder.is_dir():
        return out
    for file in _vars_files(folder, name):
        shown = str(file)
        raw = file.read_bytes()
        if _is_vaulted(raw):
            notices.append(
                Problem(
                    Location(shown, 1),
                    "encrypted with Ansible Vault: not read (raorch does not decrypt vault "
                    "files; passwords there are not needed: raorch never copies one)",
                    "if it also sets connection variables (ansible_user, ansible_port, ...), "
                    "set them in a plain vars file or in the raorch inventory",
                )
            )
            continue
        text = _read_text(file, shown)
        data = parse_yaml_text(text, shown, notices)
        if data is None:
            continue
        if not isinstance(data, MarkedMap):
            raise _fail(Location(shown, 1), "a vars file must be a mapping of variables", "")
        for key, value in data.items():
            # The file's name says where it is: no scope besides.
            out[key] = Var(value, Location(shown, data.key_lines.get(key)), "")
    return out
