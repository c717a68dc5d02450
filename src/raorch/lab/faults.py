"""Injected faults: which emulated hosts misbehave, and how.

The faults file is YAML (docs/lab.md, "Faults"):

.. code-block:: yaml

    broken_trusts: [PARTNER]        # accounts of these domains fail with TrustFailure (1789)
    faults:
      - hosts: [lab-0003, lab-0010] # by name ...
        unreachable: true           # no listener: connection refused
      - share: 0.05                 # ... or a share of the fleet, chosen deterministically
        latency_ms: 300             # added to every HTTP request
      - hosts: [lab-0004]
        auth_refused: true          # every authentication fails (HTTP 401)
      - hosts: [lab-0005]
        hang_after: 0               # requests after the first N of a connection never answer
      - hosts: [lab-0006]
        reset_after: 2              # the connection is reset (TCP RST) at request N+1
      - hosts: [lab-0007]
        slow_open_ms: 5000          # the runspace pool takes this long to open
      - hosts: [lab-0011]
        stall_receive_ms: 12000     # a Receive that takes pipeline output answers this late,
                                    # once per pipeline (the client times out and resends it)
      - hosts: [lab-0008]
        trust_failure: true         # the host's secure channel is broken: lookups give 1789
      - hosts: [lab-0012]
        missing_groups: [S-1-5-32-544]  # no local group with these SIDs (as if deleted)
      - hosts: [lab-0010]
        local_policy_modify_state: 1  # INetFwPolicy2.LocalPolicyModifyState: a domain GPO
                                      # overrides local firewall rules (2: inbound blocked)
      - hosts: [lab-0009]
        deny:                       # AccessDenied for matching operations
          - op: SetFirewallRule
          - key: HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services
          - {op: ReadValues, key: HKLM\\SOFTWARE\\Microsoft\\Ole}
          - {op: AddGroupMember, after_write: true}   # takes effect, then reports AccessDenied
          - {key: HKLM\\SOFTWARE\\Policies, after_create_key: true}  # keys made, value denied

Several entries may apply to one host: scalars of later entries win, deny lists add up.
A ``share`` picks ``round(share * fleet size)`` hosts by a hash of (entry number, host index),
so the same file always picks the same hosts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from raorch.lab.operations import DenyRule

_ENTRY_KEYS = {
    "hosts",
    "share",
    "unreachable",
    "auth_refused",
    "latency_ms",
    "hang",
    "hang_after",
    "reset_after",
    "slow_open_ms",
    "stall_receive_ms",
    "trust_failure",
    "missing_groups",
    "local_policy_modify_state",
    "deny",
}


# A deny rule: which operations it matches, and when the denial comes (docs/lab.md, "Faults").
_DENY_FLAGS = ("after_write", "after_create_key")
_DENY_KEYS = {"op", "key", "group", *_DENY_FLAGS}


class FaultsError(ValueError):
    """A faults file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class HostFaults:
    unreachable: bool = False
    auth_refused: bool = False
    latency: float = 0.0  # seconds added to each request
    hang_after: int | None = None  # requests of a connection answered before it hangs
    reset_after: int | None = None  # requests of a connection answered before a TCP reset
    slow_open: float = 0.0  # seconds added to the runspace pool's opening
    # Seconds a Receive that took pipeline output waits before it answers, once per pipeline:
    # a network path that stalls (docs/lab.md, "Receive and its retransmission").
    stall_receive: float = 0.0
    trust_failure: bool = False
    # Local groups the host cannot find by SID (GetGroup, Add/RemoveGroupMember: NotFound).
    missing_groups: frozenset[str] = frozenset()
    # INetFwPolicy2.LocalPolicyModifyState the host reports (NET_FW_MODIFY_STATE: 0 OK,
    # 1 GP_OVERRIDE, 2 INBOUND_BLOCKED; docs/windows.md, section 5).
    local_policy_modify_state: int = 0
    deny: tuple[DenyRule, ...] = ()


NO_FAULTS = HostFaults()


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults resolved for a fleet: by host name, plus fleet-wide settings."""

    by_host: dict[str, HostFaults] = field(default_factory=dict)
    broken_trusts: frozenset[str] = frozenset()

    def for_host(self, name: str) -> HostFaults:
        return self.by_host.get(name, NO_FAULTS)


def load_faults(path: Path, host_names: list[str]) -> FaultPlan:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return FaultPlan()
    except OSError as exc:
        raise FaultsError(f"{path}: cannot read the faults file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FaultsError(f"{path}: not valid YAML: {exc}") from exc
    return parse_faults(data, host_names, str(path))


def parse_faults(data: Any, host_names: list[str], where: str = "faults") -> FaultPlan:
    if data is None:
        return FaultPlan()
    if not isinstance(data, dict):
        raise FaultsError(f"{where}: expected a mapping with 'faults:' and/or 'broken_trusts:'")
    unknown = set(data) - {"faults", "broken_trusts"}
    if unknown:
        raise FaultsError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; use faults, broken_trusts"
        )
    broken = data.get("broken_trusts") or []
    if not isinstance(broken, list) or not all(isinstance(d, str) for d in broken):
        raise FaultsError(f"{where}: broken_trusts must be a list of domain names")
    entries = data.get("faults") or []
    if not isinstance(entries, list):
        raise FaultsError(f"{where}: faults must be a list of entries")
    known = set(host_names)
    by_host: dict[str, HostFaults] = {}
    for number, entry in enumerate(entries, start=1):
        at = f"{where}: faults entry {number}"
        if not isinstance(entry, dict):
            raise FaultsError(f"{at}: expected a mapping")
        bad = set(entry) - _ENTRY_KEYS
        if bad:
            raise FaultsError(f"{at}: unknown key(s) {sorted(bad)}; known: {sorted(_ENTRY_KEYS)}")
        targets = _targets(entry, number, host_names, known, at)
        for name in targets:
            by_host[name] = _apply(by_host.get(name, NO_FAULTS), entry, at)
    return FaultPlan(by_host, frozenset(d.upper() for d in broken))


def _targets(
    entry: dict[str, Any], number: int, host_names: list[str], known: set[str], at: str
) -> list[str]:
    if "hosts" in entry and "share" in entry:
        raise FaultsError(f"{at}: give either hosts or share, not both")
    if "hosts" in entry:
        hosts = entry["hosts"]
        if isinstance(hosts, str):
            hosts = [hosts]
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise FaultsError(f"{at}: hosts must be a list of host names")
        missing = [h for h in hosts if h not in known]
        if missing:
            raise FaultsError(f"{at}: no such host(s) {missing} in this fleet")
        return list(hosts)
    if "share" in entry:
        share = entry["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise FaultsError(f"{at}: share must be a number from 0 to 1")
        count = round(share * len(host_names))
        ranked = sorted(
            host_names,
            key=lambda h: hashlib.sha256(f"{number}:{h}".encode()).digest(),
        )
        return ranked[:count]
    raise FaultsError(f"{at}: say which hosts: hosts: [names] or share: 0.1")


def _apply(base: HostFaults, entry: dict[str, Any], at: str) -> HostFaults:
    def flag(name: str) -> bool:
        value = entry[name]
        if not isinstance(value, bool):
            raise FaultsError(f"{at}: {name} must be true or false")
        return value

    def count(name: str) -> int:
        value = entry[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FaultsError(f"{at}: {name} must be a whole number >= 0")
        return value

    def millis(name: str) -> float:
        value = entry[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise FaultsError(f"{at}: {name} must be a number of milliseconds >= 0")
        return float(value) / 1000.0

    out = base
    if "unreachable" in entry:
        out = replace(out, unreachable=flag("unreachable"))
    if "auth_refused" in entry:
        out = replace(out, auth_refused=flag("auth_refused"))
    if "trust_failure" in entry:
        out = replace(out, trust_failure=flag("trust_failure"))
    if "latency_ms" in entry:
        out = replace(out, latency=millis("latency_ms"))
    if "slow_open_ms" in entry:
        out = replace(out, slow_open=millis("slow_open_ms"))
    if "stall_receive_ms" in entry:
        out = replace(out, stall_receive=millis("stall_receive_ms"))
    if "hang" in entry:
        out = replace(out, hang_after=0 if flag("hang") else None)
    if "hang_after" in entry:
        out = replace(out, hang_after=count("hang_after"))
    if "reset_after" in entry:
        out = replace(out, reset_after=count("reset_after"))
    if "missing_groups" in entry:
        sids = entry["missing_groups"]
        if not isinstance(sids, list) or not all(
            isinstance(s, str) and s.upper().startswith("S-1-") for s in sids
        ):
            raise FaultsError(f"{at}: missing_groups must be a list of group SIDs (S-1-...)")
        out = replace(out, missing_groups=frozenset(s.upper() for s in sids))
    if "local_policy_modify_state" in entry:
        state = entry["local_policy_modify_state"]
        if isinstance(state, bool) or state not in (0, 1, 2):
            raise FaultsError(
                f"{at}: local_policy_modify_state must be 0 (OK), 1 (GP_OVERRIDE) or "
                "2 (INBOUND_BLOCKED)"
            )
        out = replace(out, local_policy_modify_state=state)
    if "deny" in entry:
        rules = entry["deny"]
        if not isinstance(rules, list):
            raise FaultsError(f"{at}: deny must be a list of {{op, key, group}} mappings")
        parsed: list[DenyRule] = []
        for rule in rules:
            if not isinstance(rule, dict) or not rule or set(rule) - _DENY_KEYS:
                raise FaultsError(
                    f"{at}: each deny rule is a mapping of op, key and/or group, and optionally "
                    "after_write or after_create_key"
                )
            if not all(isinstance(rule[k], str) for k in ("op", "key", "group") if k in rule):
                raise FaultsError(f"{at}: deny rule op, key and group must be strings")
            if not all(isinstance(rule[k], bool) for k in _DENY_FLAGS if k in rule):
                raise FaultsError(f"{at}: after_write and after_create_key must be true or false")
            after_write = bool(rule.get("after_write", False))
            after_create_key = bool(rule.get("after_create_key", False))
            if after_write and after_create_key:
                raise FaultsError(f"{at}: a deny rule has one of after_write, after_create_key")
            if after_create_key and str(rule.get("op", "SetValue")).lower() != "setvalue":
                raise FaultsError(f"{at}: after_create_key applies to op SetValue only")
            parsed.append(
                DenyRule(
                    rule.get("op"),
                    rule.get("key"),
                    rule.get("group"),
                    after_write=after_write,
                    after_create_key=after_create_key,
                )
            )
        out = replace(out, deny=out.deny + tuple(parsed))
    return out
