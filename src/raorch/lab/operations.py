"""The remote-operations contract (docs/remote-operations.md), carried out on a host model.

The lab does not interpret PowerShell. A pipeline is accepted only when it holds one script
whose first line is ``# raorch-batch v1`` and whose parameter ``Operations`` is an array of
hashtables; each operation runs on the ``Host`` and yields one hashtable, with the results and
error messages Windows (.NET 2.0 / PowerShell 2.0) gives. Anything else raises
``PipelineRejected``, which the server turns into a failed pipeline with an ErrorRecord.

This module is written from the contract, not from raorch's controller code: it imports
nothing from raorch outside ``raorch.lab``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psrpcore.types import PSInt, PSInt64

from raorch.lab.directory import Directory
from raorch.lab.host import ADMINISTRATORS_SID, FirewallRule, Group, Host, Member, display_name
from raorch.lab.registry import RegData, RegistryPathError, RegKind, normalize_key
from raorch.lab.remoteassistance import REMOTE_ASSISTANCE_TASK, offerraupdate
from raorch.lab.rsop import REG_TYPE_NUMBERS, RSOP_LOGGING_KEY, RSOP_LOGGING_VALUE, value_bytes

MARKER = "# raorch-batch v1"
PARAMETER = "Operations"

READ_OPS = frozenset(
    {
        "GetFacts",
        "ResolveAccount",
        "ReadValues",
        "ListKey",
        "GetGroup",
        "GetFirewallRules",
        "GetRegistryPolicy",
    }
)
WRITE_OPS = frozenset(
    {
        "SetValue",
        "DeleteValue",
        "DeleteKey",
        "AddGroupMember",
        "RemoveGroupMember",
        "SetFirewallRule",
        "RunScheduledTask",
    }
)
# Required parameter keys of each operation (the contract's table).
REQUIRED: dict[str, tuple[str, ...]] = {
    "GetFacts": (),
    "ResolveAccount": ("Account",),
    "ReadValues": ("Key", "Names"),
    "ListKey": ("Key",),
    "SetValue": ("Key", "Name", "Type", "Data"),
    "DeleteValue": ("Key", "Name"),
    "DeleteKey": ("Key",),
    "GetGroup": ("Sid",),
    "AddGroupMember": ("Sid", "Member"),
    "RemoveGroupMember": ("Sid", "Member"),
    "GetFirewallRules": ("Group",),
    "SetFirewallRule": ("Group", "Rule", "Enabled"),
    "RunScheduledTask": ("Path", "WaitSeconds"),
    "GetRegistryPolicy": (),
}

# The keys whose RSoP settings GetRegistryPolicy reports (docs/remote-operations.md): those
# raorch writes, and their subkeys; as RSoP names them, relative to HKLM.
POLICY_KEYS = (
    "SOFTWARE\\POLICIES\\MICROSOFT\\WINDOWS NT\\TERMINAL SERVICES",
    "SOFTWARE\\POLICIES\\MICROSOFT\\WINDOWSFIREWALL",
    "SOFTWARE\\MICROSOFT\\OLE",
)

# .NET / Win32 messages, as PowerShell 2.0 shows them for each failure.
MSG_REG_DENIED = "Requested registry access is not allowed."
MSG_FW_DENIED = "Access is denied. (Exception from HRESULT: 0x80070005 (E_ACCESSDENIED))"
MSG_ADSI_DENIED = 'Exception calling "Add" with "1" argument(s): "Access is denied.\r\n"'
MSG_NOT_MAPPED = (
    'Exception calling "Translate" with "1" argument(s): '
    '"Some or all identity references could not be translated."'
)
MSG_TRUST = (
    'Exception calling "Translate" with "1" argument(s): '
    '"The trust relationship between this workstation and the primary domain failed.\r\n"'
)
MSG_SID_NOT_FOUND = (
    'Exception calling "Translate" with "1" argument(s): '
    '"No mapping between account names and security IDs was done."'
)
MSG_NO_SCHEDULE_SERVICE = (
    'New-Object : Cannot create the COM object "Schedule.Service": Retrieving the COM class '
    "factory for component with CLSID {0F87369F-A4E5-4CFC-BD3E-73E6154572DD} failed due to the "
    "following error: 80040154."
)
MSG_NO_TASK = (
    'Exception calling "GetTask" with "1" argument(s): "The system cannot find the file '
    'specified. (Exception from HRESULT: 0x80070002)"'
)
MSG_NO_FWPOLICY2 = (
    'New-Object : Cannot create the COM object "HNetCfg.FwPolicy2": Retrieving the COM class '
    "factory for component with CLSID {E2B3C97F-6AE1-41AC-817A-F6F92166D7DD} failed due to the "
    "following error: 80040154."
)


class PipelineRejected(Exception):
    """The pipeline is not a valid raorch batch: it fails as a whole (state Failed)."""

    def __init__(self, message: str, error_id: str, category: str = "InvalidArgument") -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.category = category


@dataclass(frozen=True, slots=True)
class DenyRule:
    """An injected access-denied (faults.py): matches ops by name, key prefix or rule group.

    With no ``op``, only write operations match; a read is denied only when named.
    ``after_write``: the write is carried out, then reported AccessDenied (a write that took
    effect and reports failure). ``after_create_key`` (SetValue only): the key and its missing
    parents are created, then the value write is denied, as RegistryKey.CreateSubKey succeeds
    before RegistryKey.SetValue fails (docs/windows.md, section 13).
    """

    op: str | None = None
    key: str | None = None  # HKLM\... prefix, case-insensitive
    group: str | None = None  # firewall rule group
    after_write: bool = False
    after_create_key: bool = False

    def matches(self, op: str, params: Mapping[str, Any]) -> bool:
        if self.op is not None and self.op.lower() != op.lower():
            return False
        if self.after_create_key and op != "SetValue":
            return False
        if self.op is None and op not in WRITE_OPS:
            return False
        if self.key is not None:
            key = params.get("key")
            if not isinstance(key, str):
                return False
            try:
                mine, theirs = normalize_key(self.key).upper(), normalize_key(key).upper()
            except RegistryPathError:
                return False
            if not (theirs == mine or theirs.startswith(mine + "\\")):
                return False
        if self.group is not None:
            group = params.get("group")
            if not isinstance(group, str) or group.lower() != self.group.lower():
                return False
        return True


@dataclass
class BatchResult:
    outputs: list[dict[str, Any]] = field(default_factory=list)
    mutated: bool = False


class _OpFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# ------------------------------------------------------------------ entry point


def run_pipeline(
    host: Host,
    directory: Directory,
    commands: Sequence[tuple[str, bool, Sequence[tuple[str | None, Any]]]],
    deny: Sequence[DenyRule] = (),
    trust_failure: bool = False,
    missing_groups: frozenset[str] = frozenset(),
    modify_state: int = 0,
) -> BatchResult:
    """Run one pipeline: ``commands`` are (text, is_script, parameters) as PSRP carries them.

    ``trust_failure`` models a host whose secure channel to its domain is broken: every domain
    account lookup fails with Win32 error 1789. ``missing_groups``: SIDs of local groups the
    host does not find (as if deleted since). ``modify_state`` is the host's
    INetFwPolicy2.LocalPolicyModifyState (0: local rules take effect; 1: a domain GPO
    overrides them; 2: inbound blocked), which GetFirewallRules reports.
    """
    operations = _parse_batch(commands)
    result = BatchResult()
    failed_write: str | None = None
    ctx = _Context(host, directory, deny, trust_failure, missing_groups, modify_state)
    for number, (op, params) in enumerate(operations, start=1):
        if failed_write is not None:
            result.outputs.append(
                _out(
                    op,
                    False,
                    "NotRun",
                    f"Not run: an earlier write of this batch failed ({failed_write}).",
                )
            )
            continue
        if op in WRITE_OPS:
            # Also when it fails: a write may take effect and then report failure (deny rules
            # with after_write / after_create_key), and the host's state must be saved then too.
            result.mutated = True
        try:
            data = ctx.run(op, params)
        except _OpFailed as exc:
            result.outputs.append(_out(op, False, exc.kind, exc.message))
            if op in WRITE_OPS:
                failed_write = f"operation {number}, {op}"
            continue
        out = _out(op, True, None, None)
        out.update(data)
        result.outputs.append(out)
    return result


def _out(op: str, ok: bool, kind: str | None, error: str | None) -> dict[str, Any]:
    return {"Op": op, "Ok": ok, "ErrorKind": kind, "Error": error}


def _parse_batch(
    commands: Sequence[tuple[str, bool, Sequence[tuple[str | None, Any]]]],
) -> list[tuple[str, dict[str, Any]]]:
    if len(commands) != 1:
        raise PipelineRejected(
            f"raorch lab: a pipeline must hold exactly one command, got {len(commands)}.",
            "RaorchLab.NotOneCommand",
        )
    text, is_script, parameters = commands[0]
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if not is_script:
        raise PipelineRejected(
            f"The term '{text}' is not recognized as the name of a cmdlet, function, script file, "
            "or operable program. Check the spelling of the name, or if a path was included, "
            "verify that the path is correct and try again.",
            "CommandNotFoundException",
            "ObjectNotFound",
        )
    if first_line != MARKER:
        raise PipelineRejected(
            "raorch lab: this emulated host runs only raorch batches (first line "
            f"'{MARKER}'); the script received starts with {first_line[:80]!r}.",
            "RaorchLab.UnknownScript",
            "NotImplemented",
        )
    ops_value: Any = None
    found = False
    for name, value in parameters:
        if name is not None and name.lower() == PARAMETER.lower():
            ops_value, found = value, True
    if not found:
        raise PipelineRejected(
            f"raorch lab: the batch has no '{PARAMETER}' parameter.",
            "RaorchLab.MissingOperations",
        )
    if isinstance(ops_value, Mapping):
        ops_value = [ops_value]
    if not isinstance(ops_value, list | tuple):
        raise PipelineRejected(
            f"raorch lab: '{PARAMETER}' must be an array of hashtables, "
            f"got {type(ops_value).__name__}.",
            "RaorchLab.BadOperations",
        )
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(ops_value, start=1):
        if not isinstance(item, Mapping):
            raise PipelineRejected(
                f"raorch lab: operation {i} is not a hashtable ({type(item).__name__}).",
                "RaorchLab.BadOperations",
            )
        # PowerShell hashtables are case-insensitive: keys are compared lower-cased.
        params = {str(k).lower(): v for k, v in item.items()}
        op_raw = params.get("op")
        op = next(
            (o for o in REQUIRED if isinstance(op_raw, str) and o.lower() == op_raw.lower()), None
        )
        if op is None:
            raise PipelineRejected(
                f"raorch lab: operation {i} has an unknown Op {op_raw!r}; "
                f"known: {', '.join(REQUIRED)}.",
                "RaorchLab.UnknownOp",
            )
        missing = [k for k in REQUIRED[op] if k.lower() not in params]
        if missing:
            raise PipelineRejected(
                f"raorch lab: operation {i} ({op}) lacks the key(s) {', '.join(missing)}.",
                "RaorchLab.MissingKey",
            )
        out.append((op, params))
    return out


# ------------------------------------------------------------------ the operations


class _Context:
    def __init__(
        self,
        host: Host,
        directory: Directory,
        deny: Sequence[DenyRule],
        trust_failure: bool,
        missing_groups: frozenset[str] = frozenset(),
        modify_state: int = 0,
    ) -> None:
        self.host = host
        self.directory = directory
        self.deny = deny
        self.trust_failure = trust_failure
        self.missing_groups = missing_groups
        self.modify_state = modify_state
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "GetFacts": self.get_facts,
            "ResolveAccount": self.resolve_account,
            "ReadValues": self.read_values,
            "ListKey": self.list_key,
            "SetValue": self.set_value,
            "DeleteValue": self.delete_value,
            "DeleteKey": self.delete_key,
            "GetGroup": self.get_group,
            "AddGroupMember": self.add_member,
            "RemoveGroupMember": self.remove_member,
            "GetFirewallRules": self.get_rules,
            "SetFirewallRule": self.set_rule,
            "RunScheduledTask": self.run_task,
            "GetRegistryPolicy": self.get_registry_policy,
        }

    def run(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        if op in ("AddGroupMember", "RemoveGroupMember"):
            # Denied only once the group and the member are found (_member_change).
            return self.handlers[op](params)
        message = MSG_FW_DENIED if op in ("SetFirewallRule", "RunScheduledTask") else MSG_REG_DENIED
        rule = self._denied(op, params)
        if rule is None:
            return self.handlers[op](params)
        if rule.after_write and op in WRITE_OPS:
            self.handlers[op](params)  # it takes effect ...
        elif rule.after_create_key:
            self.host.registry.create_key(self._key(params))  # CreateSubKey succeeded ...
        raise _OpFailed("AccessDenied", message)  # ... and is reported denied

    def _denied(self, op: str, params: dict[str, Any]) -> DenyRule | None:
        return next((rule for rule in self.deny if rule.matches(op, params)), None)

    # --------------------------------------------------------- facts and accounts

    def get_facts(self, params: dict[str, Any]) -> dict[str, Any]:
        f = self.host.facts
        return {
            "OsVersion": f.os_version,
            "Caption": f.edition,
            "Sku": PSInt(f.sku),
            "PsVersion": f.ps_version,
            "PartOfDomain": f.part_of_domain,
            "Domain": f.domain,
            "Language": f.language,
            "ComputerName": f.computer_name,
            "Wow64": f.wow64,
            "DomainRole": PSInt(f.domain_role),
            "RaServer": f.ra_server,
            "HelpSvcStartMode": f.helpsvc_start_mode,
            "TermServiceStartMode": f.termservice_start_mode,
        }

    def _resolve(self, account: Any) -> tuple[str, str]:
        """(spelling, sid) as NTAccount.Translate gives it, or _OpFailed."""
        if not isinstance(account, str):
            raise _OpFailed("Failed", f"Account must be a string 'DOMAIN\\name', got {account!r}.")
        domain, sep, name = account.partition("\\")
        if not sep or not domain or not name:
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        host = self.host
        if domain.upper() in (host.facts.computer_name.upper(), "."):
            local = host.local_account(name)
            if local is None:
                raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
            return local
        if domain.upper() == "BUILTIN":
            group = next(
                (
                    g
                    for g in host.groups.values()
                    if g.sid.startswith("S-1-5-32-") and g.name.upper() == name.upper()
                ),
                None,
            )
            if group is None:
                raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
            return f"BUILTIN\\{group.name}", group.sid
        if not host.facts.part_of_domain:
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        host_domain = host.facts.domain
        if self.trust_failure or host_domain.upper() in self.directory.broken_trusts:
            raise _OpFailed("TrustFailure", MSG_TRUST)
        if not self.directory.trusts_domain(host_domain, domain):
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        if domain.upper() in self.directory.broken_trusts:
            raise _OpFailed("TrustFailure", MSG_TRUST)
        hit = self.directory.lookup(account)
        if hit is None:
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        return hit

    def resolve_account(self, params: dict[str, Any]) -> dict[str, Any]:
        _spelling, sid = self._resolve(params["account"])
        return {"Account": str(params["account"]), "Sid": sid}

    # --------------------------------------------------------- registry

    def _key(self, params: dict[str, Any]) -> str:
        key = params["key"]
        if not isinstance(key, str):
            raise _OpFailed("Failed", f"Key must be a string, got {key!r}.")
        try:
            return normalize_key(key)
        except RegistryPathError as exc:
            raise _OpFailed("Failed", f"raorch lab: {exc} (only HKLM is used).") from None

    def _values_out(self, key: str, names: list[str] | None) -> dict[str, Any]:
        reg_key = self.host.registry.get_key(key)
        if reg_key is None:
            return {"Key": key, "Exists": False, "Values": []}
        if names is None:
            chosen = [(v.name, v) for v in reg_key.values.values()]
        else:
            # ReadValues reports each value under the name asked for, as raorch's batch script
            # does (remote-operations.md, transport notes); ListKey under the stored name.
            chosen = [(n, v) for n in names if (v := reg_key.values.get(n.upper())) is not None]
        return {
            "Key": reg_key.path,
            "Exists": True,
            "Values": [
                {"Name": name, "Type": v.kind.value, "Data": wire_data(v.kind, v.data)}
                for name, v in chosen
            ],
        }

    def read_values(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._key(params)
        names = params["names"]
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise _OpFailed("Failed", f"Names must be an array of strings, got {names!r}.")
        return self._values_out(key, [str(n) for n in names])

    def list_key(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._values_out(self._key(params), None)

    def set_value(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._key(params)
        name = params["name"]
        if not isinstance(name, str):
            raise _OpFailed("Failed", f"Name must be a string, got {name!r}.")
        kind_raw = params["type"]
        kind = next(
            (
                k
                for k in RegKind
                if isinstance(kind_raw, str) and k.value.lower() == kind_raw.lower()
            ),
            None,
        )
        if kind is None:
            raise _OpFailed(
                "Failed",
                f"unknown registry type '{kind_raw}' for value '{name}' (known: "
                + ", ".join(k.value for k in RegKind)
                + ").",
            )
        data = store_data(kind, params["data"])
        self.host.registry.set_value(key, name, kind, data)
        return {}

    def delete_value(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._key(params)
        name = params["name"]
        if not isinstance(name, str):
            raise _OpFailed("Failed", f"Name must be a string, got {name!r}.")
        self.host.registry.delete_value(key, name)
        return {}

    def delete_key(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._key(params)
        if key.count("\\") < 2:
            # HKLM itself or a root key under it (SOFTWARE, SYSTEM): never a key to delete.
            raise _OpFailed("Failed", f"raorch lab: registry key '{key}' is a root key of HKLM.")
        # Absent or not empty (values or subkeys): left alone, success with Deleted false.
        return {"Key": str(params["key"]), "Deleted": self.host.registry.delete_empty_key(key)}

    # --------------------------------------------------------- groups

    def _group(self, params: dict[str, Any]) -> Group:
        sid = str(params["sid"]).upper()
        group = self.host.groups.get(sid)
        if group is None or sid in self.missing_groups:
            raise _OpFailed("NotFound", MSG_SID_NOT_FOUND)
        return group

    def get_group(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group(params)
        return {
            "Sid": group.sid,
            "Name": group.name,
            "Members": [{"Sid": m.sid, "Name": m.name} for m in group.members],
        }

    def _account_of_sid(self, sid: str) -> str:
        """The ``DOMAIN\\name`` a SID translates to on this host, as
        ``SecurityIdentifier.Translate([NTAccount])`` gives it, or _OpFailed (NotMapped,
        TrustFailure) as the account's name would fail to resolve here."""
        host = self.host
        for local in ("Administrator", "Guest"):
            hit = host.local_account(local)
            if hit is not None and hit[1] == sid:
                return hit[0]
        group = host.groups.get(sid)
        if group is not None and sid.startswith("S-1-5-32-"):
            return f"BUILTIN\\{group.name}"
        name = self.directory.name_of_sid(sid)
        if name is None:
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        # The host sees the account only through its own domain's trusts.
        spelling, resolved = self._resolve(name)
        if resolved != sid:
            raise _OpFailed("NotMapped", MSG_NOT_MAPPED)
        return spelling

    def _member_change(self, params: dict[str, Any], add: bool) -> dict[str, Any]:
        group = self._group(params)
        sid = params["member"]
        if not isinstance(sid, str) or not sid.upper().startswith("S-1-"):
            raise _OpFailed("Failed", f"Member must be a SID string 'S-1-...', got {sid!r}.")
        sid = sid.upper()
        # By SID (docs/remote-operations.md): adding needs the SID to name an account here;
        # removing does not (an orphaned SID, its account deleted, is removed as it is).
        spelling = self._account_of_sid(sid) if add else sid
        op = "AddGroupMember" if add else "RemoveGroupMember"
        rule = self._denied(op, params)
        if rule is not None and not rule.after_write:
            raise _OpFailed("AccessDenied", _adsi_denied(add))
        present = any(m.sid == sid for m in group.members)
        if add and not present:
            group.members.append(Member(sid, spelling))
        elif not add and present:
            group.members = [m for m in group.members if m.sid != sid]
        if rule is not None:
            raise _OpFailed("AccessDenied", _adsi_denied(add))  # after it took effect
        return {}

    def add_member(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._member_change(params, add=True)

    def remove_member(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._member_change(params, add=False)

    # --------------------------------------------------------- firewall

    def _identity(self, rule: FirewallRule) -> dict[str, Any]:
        """A rule as COM shows it: INetFwRule.Name is the display name in the host's language
        (never the rule id, which COM does not expose); a rule without a local port shows
        "*" (UNCONFIRMED, docs/windows.md, section 5)."""
        return {
            "Name": display_name(rule.name, self.host.facts.language),
            "Direction": PSInt(rule.direction),
            "Profiles": PSInt(rule.profiles),
            "Protocol": PSInt(rule.protocol),
            "LocalPorts": rule.local_ports or "*",
            "ApplicationName": rule.application,
            "ServiceName": rule.service,
        }

    def get_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.host.firewall is None:
            raise _OpFailed("NotFound", MSG_NO_FWPOLICY2)
        group = str(params["group"])
        rules = [r for r in self.host.firewall.values() if r.group.lower() == group.lower()]
        return {
            "Group": group,
            "Rules": [{**self._identity(r), "Enabled": r.enabled} for r in rules],
            "LocalPolicyModifyState": PSInt(self.modify_state),
        }

    def set_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        group, wanted_raw, enabled = str(params["group"]), params["rule"], params["enabled"]
        if not isinstance(wanted_raw, Mapping):
            raise _OpFailed("Failed", f"Rule must be a hashtable of {', '.join(RULE_KEYS)}.")
        wanted = {str(k).lower(): v for k, v in wanted_raw.items()}
        missing = [k for k in RULE_KEYS if k.lower() not in wanted]
        if missing:
            raise _OpFailed("Failed", f"Rule has no key '{missing[0]}'.")
        want = {k: _rule_field(k, wanted[k.lower()]) for k in RULE_KEYS}
        what = ", ".join(f"{k} '{want[k]}'" for k in RULE_KEYS)
        if not isinstance(enabled, bool):
            raise _OpFailed("Failed", f"Enabled must be a boolean for the rule {what}.")
        if self.host.firewall is None:
            raise _OpFailed("NotFound", MSG_NO_FWPOLICY2)
        # Every rule of the group whose identity is exactly the one asked for (raorch's batch
        # script compares all seven properties, strings case-sensitively): a twin with the same
        # display name and other profiles is another rule.
        matched = [
            r
            for r in self.host.firewall.values()
            if r.group.lower() == group.lower()
            and {k: _rule_field(k, v) for k, v in self._identity(r).items()} == want
        ]
        if not matched:
            raise _OpFailed("NotFound", f"no firewall rule of group '{group}' is exactly {what}")
        for rule in matched:
            rule.enabled = enabled
        return {}

    # --------------------------------------------------------- scheduled tasks

    def run_task(self, params: dict[str, Any]) -> dict[str, Any]:
        """The one task the lab models: RemoteAssistanceTask, whose action RAServer.exe
        /offerraupdate fills "Offer Remote Assistance Helpers" from the policy
        (remoteassistance.py; docs/windows.md, section 11). XP / 2003 have no Task Scheduler 2.0."""
        path, wait = params["path"], params["waitseconds"]
        if not isinstance(path, str) or isinstance(wait, bool) or not isinstance(wait, int):
            raise _OpFailed("Failed", f"Path must be a string and WaitSeconds an int: {params!r}.")
        if self.host.facts.os_version.startswith("5."):
            raise _OpFailed("NotFound", MSG_NO_SCHEDULE_SERVICE)
        if path.lower() != REMOTE_ASSISTANCE_TASK.lower():
            raise _OpFailed("NotFound", MSG_NO_TASK)
        offerraupdate(self.host, lambda account: self._resolve_or_none(account))
        return {"Path": path, "LastResult": PSInt(0)}

    # --------------------------------------------------------- Group Policy (RSoP)

    def get_registry_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        """What WMI's root\\rsop\\computer holds for the keys raorch writes (docs/windows.md,
        section 15), and whether RSoP logging is on (the RSoPLogging policy value is not 0).
        With logging off, what was logged before is still answered: Windows does not clear it."""
        logging_value = None
        key = self.host.registry.get_key(RSOP_LOGGING_KEY)
        if key is not None:
            logging_value = key.values.get(RSOP_LOGGING_VALUE.upper())
        logging = not (
            logging_value is not None
            and logging_value.kind is RegKind.DWORD
            and logging_value.data == 0
        )
        rsop = self.host.rsop
        if rsop is None or not rsop.logged:
            # No such namespace, or no session: the batch script reports it so (InvalidNamespace).
            return {"Logging": logging, "Logged": False, "Settings": []}
        settings = []
        for setting in rsop.settings:
            folded = setting.key.upper().strip("\\")
            if not any(folded == k or folded.startswith(k + "\\") for k in POLICY_KEYS):
                continue
            settings.append(
                {
                    "Key": setting.key,
                    "ValueName": setting.name,
                    "ValueType": PSInt(REG_TYPE_NUMBERS[setting.kind]),
                    "Value": b"" if setting.deleted else value_bytes(setting.kind, setting.data),
                    "Deleted": setting.deleted,
                    "Precedence": PSInt(setting.precedence),
                    "GpoId": setting.gpo,
                    "GpoName": rsop.gpos.get(setting.gpo, ""),
                }
            )
        return {"Logging": logging, "Logged": True, "Settings": settings}

    def _resolve_or_none(self, account: str) -> tuple[str, str] | None:
        try:
            return self._resolve(account)
        except _OpFailed:
            return None


def resolve_account(
    host: Host, directory: Directory, account: str, trust_failure: bool = False
) -> tuple[str, str] | None:
    """(spelling, SID) of ``account`` as the host resolves it (ResolveAccount's rules), or None
    when it does not resolve: what Windows' own lookups (LookupAccountName) see."""
    return _Context(host, directory, (), trust_failure)._resolve_or_none(account)


def _adsi_denied(add: bool) -> str:
    return MSG_ADSI_DENIED if add else MSG_ADSI_DENIED.replace('"Add"', '"Remove"')


# The identity keys of a rule (docs/remote-operations.md, SetFirewallRule); the first three are
# compared as [int], the others as [string] ($null is "").
RULE_KEYS = (
    "Name",
    "Direction",
    "Profiles",
    "Protocol",
    "LocalPorts",
    "ApplicationName",
    "ServiceName",
)
_RULE_INTS = frozenset({"Direction", "Profiles", "Protocol"})


def _rule_field(key: str, value: Any) -> int | str:
    if key in _RULE_INTS:
        return _ps_integer(value, 32)
    return _ps_string(value)


# ------------------------------------------------------------------ registry data on the wire


def wire_data(kind: RegKind, data: RegData) -> Any:
    """Data as .NET returns it: DWORD as signed Int32, QWORD as signed Int64 (the contract's
    "Registry data on the wire"), strings unexpanded, MULTI_SZ as string[], BINARY as byte[]."""
    if kind is RegKind.DWORD:
        assert isinstance(data, int)
        return PSInt(data - (1 << 32) if data >= 1 << 31 else data)
    if kind is RegKind.QWORD:
        assert isinstance(data, int)
        return PSInt64(data - (1 << 64) if data >= 1 << 63 else data)
    if kind is RegKind.MULTI_SZ:
        assert isinstance(data, list)
        return list(data)
    if kind is RegKind.BINARY:
        assert isinstance(data, bytes)
        return bytes(data)
    return str(data)


def store_data(kind: RegKind, data: Any) -> RegData:
    """Convert wire data for ``kind`` as PowerShell's casts do before RegistryKey.SetValue
    (``[string]``, ``[int]``, ``[long]``, ``[string[]]``, ``[byte[]]``) and return the stored
    form (unsigned integers). A value the cast refuses fails the operation, as on Windows."""
    if kind in (RegKind.SZ, RegKind.EXPAND_SZ):
        return _ps_string(data)
    if kind in (RegKind.DWORD, RegKind.QWORD):
        bits = 32 if kind is RegKind.DWORD else 64
        value = _ps_integer(data, bits)
        return value & ((1 << bits) - 1)
    if kind is RegKind.MULTI_SZ:
        if data is None:
            return []
        items = data if isinstance(data, list | tuple) else [data]
        return [_ps_string(x) for x in items]
    # REG_BINARY: [byte[]] accepts byte[] and arrays (or one) of integers 0..255.
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    items = data if isinstance(data, list | tuple) else [data]
    return bytes(_ps_integer(x, 8, signed=False) for x in items)


def _ps_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        # [string] of an array joins its items with $OFS, a space by default.
        return " ".join(_ps_string(v) for v in value)
    return str(value)


def _ps_integer(value: Any, bits: int, signed: bool = True) -> int:
    type_name = {8: "System.Byte", 32: "System.Int32", 64: "System.Int64"}[bits]
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    number: int | None = None
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            number = None
    if number is None:
        raise _OpFailed(
            "Failed",
            f'Cannot convert value "{value}" to type "{type_name}". '
            'Error: "Input string was not in a correct format."',
        )
    if not low <= number <= high:
        raise _OpFailed(
            "Failed",
            f'Cannot convert value "{value}" to type "{type_name}". '
            f'Error: "Value was either too large or too small for {"a" if bits == 8 else "an"} '
            f'{type_name.split(".")[1]}."',
        )
    return number


__all__ = [
    "ADMINISTRATORS_SID",
    "MARKER",
    "BatchResult",
    "DenyRule",
    "PipelineRejected",
    "run_pipeline",
]
