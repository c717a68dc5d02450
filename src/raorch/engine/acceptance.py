"""The acceptance run: everything raorch does to a Windows host, tried on one test host first.

raorch's PowerShell has to meet real Windows before a rollout does (docs/windows.md, section
14). ``run_acceptance`` takes one test host of a kind (XP, 2003, Windows 10 in German, ...) and:

1. runs every read of the playbook and records each operation's own result;
2. seeds edge values where raorch will act (REG_EXPAND_SZ with ``%vars%``, DWORD 0xFFFFFFFF,
   QWORD 0xFFFFFFFFFFFFFFFF, empty REG_MULTI_SZ and REG_BINARY under ``RAUnsolicit``, which the
   playbook's exact helper list removes; ``fAllowUnsolicitedFullControl`` = 0xFFFFFFFF; a
   helper already in Administrators where the playbook adds helpers), and reads them back;
3. applies the playbook, verifies it, rolls it back, and compares the host with the snapshot
   taken before the apply, value by value and byte by byte;
4. removes the seeds, and compares the host with what it was before step 2.

Every write is recorded before it is made in a small state file (``<state>/acceptance/
<host>.json``, 0600): an acceptance run that is interrupted (Ctrl-C, a crash, a lost network)
is restored from it by the next acceptance run of that host, before anything else.

The library never prints: ``on_check`` is called as each check ends, and the result is an
``AcceptanceReport`` the CLI prints or writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

from raorch import __version__
from raorch.engine.host import HostMode, HostReport, SessionFactory, run_host
from raorch.engine.paths import private_dir, private_file
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome, Stage
from raorch.models.playbook import Playbook
from raorch.models.remote import (
    ErrorKind,
    Facts,
    FirewallRule,
    GroupState,
    KeyState,
    Operation,
    OpResult,
    RegistryPolicy,
    RegType,
    RegValue,
    RuleGroupState,
)
from raorch.planning.desired import (
    adds_helpers_to_administrators,
    modern_profile_mask,
    unique_helpers,
)
from raorch.planning.plan import (
    Change,
    Difference,
    MemberChange,
    RuleChange,
    ValueChange,
    changes_from_json,
    changes_to_json,
    describe_value,
    make_plan,
)
from raorch.planning.preflight import preflight
from raorch.planning.profile import HostProfile
from raorch.planning.snapshot import Snapshot, SnapshotError, build_snapshot, snapshot_reads
from raorch.planning.windows import (
    ADMINISTRATORS_SID,
    F_ALLOW_UNSOLICITED_FULL_CONTROL,
    RA_UNSOLICIT_KEY,
    TS_POLICY_KEY,
)
from raorch.transport.errors import TransportError
from raorch.transport.session import HostSession

STATE_FORMAT = "raorch-acceptance/1"

# The edge values of the round trip, as value names under RAUnsolicit that name no account
# (helpsvc ignores a name it cannot resolve; docs/windows.md, section 12). Each is a value
# whose exact restore a careless reader or writer would break (docs/windows.md, pitfalls).
EDGE_VALUES: tuple[tuple[str, RegValue], ...] = (
    ("raorch-acceptance-expand", RegValue(RegType.EXPAND_SZ, "%SystemRoot%\\system32;%TEMP%")),
    ("raorch-acceptance-dword", RegValue(RegType.DWORD, 0xFFFF_FFFF)),
    ("raorch-acceptance-qword", RegValue(RegType.QWORD, 0xFFFF_FFFF_FFFF_FFFF)),
    ("raorch-acceptance-multi", RegValue(RegType.MULTI_SZ, ())),
    ("raorch-acceptance-binary", RegValue(RegType.BINARY, b"")),
    ("raorch-acceptance-unicode", RegValue(RegType.SZ, "Ünïcödé ✓ \"quoted\" 'x'; $env:x")),
)
EDGE_DWORD = RegValue(RegType.DWORD, 0xFFFF_FFFF)


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # does not apply to this host and playbook


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    differences: tuple[Difference, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """One read operation of step 1, as the host answered it."""

    operation: str
    ok: bool
    error_kind: ErrorKind | None
    error: str
    summary: str


@dataclass(frozen=True, slots=True)
class AcceptanceReport:
    host: str
    address: str
    version: str
    facts: Facts | None
    profile: str | None
    reads: tuple[ReadRecord, ...] = ()
    checks: tuple[Check, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.status is not CheckStatus.FAILED for c in self.checks)


CheckSink = Callable[[Check], None]


def state_file(state_dir: Path, host: str) -> Path:
    return state_dir / "acceptance" / f"{host}.json"


@dataclass
class _Run:
    target: Target
    password: str
    playbook: Playbook
    domains: tuple[str, ...]
    state_path: Path
    session_factory: SessionFactory
    on_check: CheckSink | None
    checks: list[Check] = field(default_factory=list)
    reads: list[ReadRecord] = field(default_factory=list)
    facts: Facts | None = None
    profile: str | None = None

    # ------------------------------------------------------------ bookkeeping

    def check(
        self, name: str, ok: bool, detail: str, differences: Sequence[Difference] = ()
    ) -> bool:
        status = CheckStatus.PASSED if ok else CheckStatus.FAILED
        self._add(Check(name, status, detail, tuple(differences)))
        return ok

    def skip(self, name: str, detail: str) -> None:
        self._add(Check(name, CheckStatus.SKIPPED, detail))

    def _add(self, check: Check) -> None:
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(check)

    def report(self) -> AcceptanceReport:
        return AcceptanceReport(
            host=self.target.name,
            address=self.target.address,
            version=__version__,
            facts=self.facts,
            profile=self.profile,
            reads=tuple(self.reads),
            checks=tuple(self.checks),
        )

    def record(self, original: Snapshot, touched: Sequence[Change]) -> None:
        """Write what must be restored BEFORE the writes it covers (rename into place)."""
        private_dir(self.state_path.parent)
        tmp = self.state_path.with_suffix(".tmp")
        document = {
            "format": STATE_FORMAT,
            "host": self.target.name,
            "original": json.loads(original.to_json()),
            "touched": json.loads(changes_to_json(touched)),
        }
        tmp.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        private_file(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)

    def host(
        self,
        mode: HostMode,
        *,
        original: Snapshot | None = None,
        applied: Sequence[Change] | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> HostReport:
        return run_host(
            self.target,
            self.password,
            self.playbook,
            self.domains,
            mode,
            on_snapshot=on_snapshot,
            original_snapshot=original,
            applied=applied,
            # The acceptance run is the only writer on its test host: restore whatever is there.
            force=mode is HostMode.ROLLBACK,
            session_factory=self.session_factory,
        )

    def restore(self, original: Snapshot, touched: Sequence[Change], name: str) -> bool:
        """Put back every item of ``touched`` as ``original`` has it (forced: the acceptance
        run is the only writer it expects), then read the host and compare exactly."""
        report = self.host(HostMode.ROLLBACK, original=original, applied=touched)
        if report.outcome is not Outcome.ROLLED_BACK:
            return self.check(name, False, f"{report.outcome.value}: {report.reason}")
        after = self.read_state()
        differences = state_differences(original, after)
        return self.check(
            name,
            not differences,
            "the host holds exactly what it held before"
            if not differences
            else f"{len(differences)} item(s) differ from before",
            differences,
        )

    def read_state(self) -> Snapshot:
        with self.session_factory(self.target, self.password) as session:
            results = session.run(snapshot_reads(self.playbook), Stage.VERIFY)
        return build_snapshot(self.target.name, results)

    # ------------------------------------------------------------ the steps

    def resume(self) -> bool:
        """Restore what an interrupted acceptance run left; True when there was nothing or it
        worked."""
        if not self.state_path.exists():
            return True
        try:
            document = json.loads(self.state_path.read_text(encoding="utf-8"))
            if document.get("format") != STATE_FORMAT:
                raise ValueError(f"not a {STATE_FORMAT} document")
            original = Snapshot.from_json(json.dumps(document["original"]))
            touched = changes_from_json(json.dumps(document["touched"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return self.check(
                "restore an interrupted acceptance run",
                False,
                f"{self.state_path} cannot be read ({exc}); restore the host by hand from it, "
                "then delete it",
            )
        ok = self.restore(original, touched, "restore an interrupted acceptance run")
        if ok:
            self.state_path.unlink()
        return ok

    def read_everything(self) -> Snapshot | None:
        reads = snapshot_reads(self.playbook)
        with self.session_factory(self.target, self.password) as session:
            results = session.run(reads, Stage.SNAPSHOT)
        self.reads = [_read_record(r) for r in results]
        try:
            snap = build_snapshot(self.target.name, results)
        except SnapshotError as exc:
            self.check("every read", False, exc.message)
            return None
        self.facts = snap.facts
        bad = [r for r in self.reads if not r.ok and not _expected_failure(r)]
        self.check(
            "every read",
            not bad,
            f"{len(self.reads)} read(s) answered"
            + ("" if not bad else f"; {len(bad)} failed: " + "; ".join(r.operation for r in bad)),
        )
        verdict = preflight(snap, self.playbook, self.domains)
        self.profile = None if verdict.profile is None else verdict.profile.value
        if verdict.refused:
            reasons = "; ".join(r.message for r in verdict.refusals)
            self.check(
                "pre-flight",
                False,
                f"raorch refuses this host ({reasons}): pick a test host raorch would change",
            )
            return None
        self.check("pre-flight", True, f"eligible, profile {self.profile}")
        return snap

    def seeds(self, snap: Snapshot) -> tuple[Change, ...]:
        """The edge values and the member already present (see the module's docstring)."""
        present = snap.list_values(RA_UNSOLICIT_KEY)
        folded = {n.casefold() for n in present}
        changes: list[Change] = [
            ValueChange(RA_UNSOLICIT_KEY, name, None, value)
            for name, value in EDGE_VALUES
            if name.casefold() not in folded
        ]
        full = snap.value(TS_POLICY_KEY, F_ALLOW_UNSOLICITED_FULL_CONTROL)
        if full != EDGE_DWORD:
            changes.append(
                ValueChange(TS_POLICY_KEY, F_ALLOW_UNSOLICITED_FULL_CONTROL, full, EDGE_DWORD)
            )
        assert snap.facts is not None
        helper = next(iter(unique_helpers(self.playbook.offer_remote_assistance.helpers)), None)
        profile = make_plan_profile(snap, self.playbook, self.domains)
        if helper is not None and adds_helpers_to_administrators(self.playbook, profile):
            sid = snap.sid_of(helper)
            if sid is not None and not snap.is_member(sid):
                changes.append(MemberChange(ADMINISTRATORS_SID, helper, sid, False, True))
        changes.extend(self._twin_seed(snap))
        return tuple(changes)

    def _twin_seed(self, snap: Snapshot) -> list[Change]:
        """A twin rule (docs/windows.md, section 5): a rule the playbook must NOT touch (its
        profiles are outside the playbook's) that shares its display name with one it enables.
        Flipped before the apply, it must stay flipped through apply and rollback: a write or a
        restore that reached the wrong twin shows in the exact comparisons."""
        modern = self.playbook.firewall.modern
        if snap.firewall is None or modern is None:
            return []
        mask = modern_profile_mask(self.playbook)
        rules = snap.firewall.rules
        for rule in rules:
            if rule.identity.profiles is None or rule.identity.profiles & mask:
                continue
            if any(
                other.identity.name == rule.identity.name and (other.identity.profiles or 0) & mask
                for other in rules
            ):
                return [
                    RuleChange(modern.rule_group, rule.identity, rule.enabled, not rule.enabled)
                ]
        return []

    def seed(self, snap: Snapshot, seeds: tuple[Change, ...]) -> bool:
        self.record(snap, seeds)
        ops: list[Operation] = [c.operation() for c in seeds]
        with self.session_factory(self.target, self.password) as session:
            results = session.run(ops, Stage.APPLY)
        failed = next((i for i, r in enumerate(results) if not r.ok), None)
        if failed is not None:
            self.check(
                "write the edge values",
                False,
                f"{seeds[failed].describe()} failed ({results[failed].error_text()})",
            )
            return False
        seeded = self.read_state()
        differences = [
            Difference(c.item, describe_value(c.after), describe_value(found))
            for c in seeds
            if isinstance(c, ValueChange) and (found := seeded.value(c.key, c.name)) != c.after
        ]
        members = [
            Difference(c.item, "member", "not a member")
            for c in seeds
            if isinstance(c, MemberChange) and not seeded.is_member(c.sid)
        ]
        twins = [
            Difference(c.item, "enabled" if c.after else "disabled", "not so")
            for c in seeds
            if isinstance(c, RuleChange)
            and not any(r.identity == c.rule and r.enabled == c.after for r in _rules(seeded))
        ]
        return self.check(
            "write the edge values and read them back",
            not differences and not members and not twins,
            f"{len(seeds)} write(s): REG_EXPAND_SZ with %vars%, DWORD and QWORD all ones, empty "
            "REG_MULTI_SZ and REG_BINARY, Unicode"
            + (
                ", a helper added to Administrators"
                if any(isinstance(c, MemberChange) for c in seeds)
                else ""
            )
            + (", a twin rule flipped" if any(isinstance(c, RuleChange) for c in seeds) else ""),
            (*differences, *members, *twins),
        )

    def round_trip(self, first: Snapshot, seeds: tuple[Change, ...]) -> bool:
        """``first``: the host before the seeds, what an interrupted run must restore."""
        captured: list[Snapshot] = []

        def on_snapshot(snap: Snapshot) -> None:
            # Recorded before the first write of the apply: what a restore must cover.
            captured.append(snap)
            profile = make_plan_profile(snap, self.playbook, self.domains)
            planned = () if profile is None else make_plan(self.playbook, profile, snap).changes
            self.record(first, (*seeds, *planned))

        applied = self.host(HostMode.APPLY, on_snapshot=on_snapshot)
        if not self.check(
            "apply the playbook",
            applied.outcome is Outcome.CHANGED,
            f"{applied.outcome.value}, {len(applied.changes)} change(s)"
            + (f": {applied.reason}" if applied.reason else ""),
            applied.differences,
        ):
            return False
        verified = self.host(HostMode.VERIFY)
        self.check(
            "verify",
            verified.outcome is Outcome.COMPLIANT,
            verified.outcome.value + (f": {verified.reason}" if verified.reason else ""),
            verified.differences,
        )
        before_apply = captured[0]
        rolled = self.host(HostMode.ROLLBACK, original=before_apply, applied=applied.changes)
        if not self.check(
            "roll back",
            rolled.outcome is Outcome.ROLLED_BACK,
            f"{rolled.outcome.value}, {len(rolled.changes)} restoring write(s), "
            f"{len(rolled.removed_keys)} key(s) deleted"
            + (f": {rolled.reason}" if rolled.reason else ""),
            rolled.differences,
        ):
            return False
        differences = state_differences(before_apply, self.read_state())
        return self.check(
            "exact round trip",
            not differences,
            "after the rollback the host holds exactly its snapshot (types and bytes)"
            if not differences
            else f"{len(differences)} item(s) differ from the snapshot",
            differences,
        )


def make_plan_profile(
    snap: Snapshot, playbook: Playbook, domains: Sequence[str]
) -> HostProfile | None:
    return preflight(snap, playbook, domains).profile


def run_acceptance(
    target: Target,
    password: str,
    playbook: Playbook,
    domains: Sequence[str],
    state_dir: Path,
    *,
    on_check: CheckSink | None = None,
    session_factory: SessionFactory = HostSession,
) -> AcceptanceReport:
    """The acceptance run of one host (see the module's docstring). Never raises for a host
    problem: each becomes a failed check."""
    run = _Run(
        target,
        password,
        playbook,
        tuple(domains),
        state_file(state_dir, target.name),
        session_factory,
        on_check,
    )
    try:
        if not run.resume():
            return run.report()
        snap = run.read_everything()
        if snap is None:
            return run.report()
        seeds = run.seeds(snap)
        seeded = run.seed(snap, seeds)
        if seeded:
            run.round_trip(snap, seeds)
        if run.restore(snap, seeds, "remove the edge values: the host as it was"):
            run.state_path.unlink(missing_ok=True)
    except TransportError as error:
        run.check(
            f"session ({error.stage.value})",
            False,
            f"{error}"
            + (
                f"; the next acceptance run of this host restores it from {run.state_path}"
                if run.state_path.exists()
                else ""
            ),
        )
    return run.report()


def _rules(snap: Snapshot) -> tuple[FirewallRule, ...]:
    return () if snap.firewall is None else snap.firewall.rules


# ---------------------------------------------------------------- comparing two states


def state_differences(expected: Snapshot, found: Snapshot) -> tuple[Difference, ...]:
    """Every item that differs between two readings of the same reads: key existence, values
    (type and data, exactly), Administrators members (by SID), firewall rules' Enabled."""
    out: list[Difference] = []
    for record in expected.keys:
        now = found.record(record.key)
        if now is None:
            out.append(Difference(f"key {record.key}", "read", "not read"))
            continue
        if record.exists != now.exists:
            out.append(Difference(f"key {record.key}", _exists(record.exists), _exists(now.exists)))
        names = {n.casefold(): n for n in (*record.values, *now.values)}
        for name in names.values():
            want, got = record.get(name), now.get(name)
            if want != got:
                out.append(
                    Difference(rf"{record.key}\{name}", describe_value(want), describe_value(got))
                )
    out += _member_differences(expected.administrators, found.administrators)
    out += _rule_differences(expected.firewall, found.firewall)
    return tuple(out)


def _exists(flag: bool) -> str:
    return "present" if flag else "absent"


def _member_differences(want: GroupState | None, got: GroupState | None) -> list[Difference]:
    if want is None or got is None:
        if (want is None) != (got is None):
            return [
                Difference(
                    f"group {ADMINISTRATORS_SID}",
                    _exists(want is not None),
                    _exists(got is not None),
                )
            ]
        return []
    before = {m.sid.upper(): m.name for m in want.members}
    after = {m.sid.upper(): m.name for m in got.members}
    return [
        Difference(
            f"group {ADMINISTRATORS_SID} member {(before | after)[sid]} ({sid})",
            "member" if sid in before else "not a member",
            "member" if sid in after else "not a member",
        )
        for sid in sorted(set(before) ^ set(after))
    ]


def _rule_differences(want: RuleGroupState | None, got: RuleGroupState | None) -> list[Difference]:
    if want is None or got is None:
        return []
    out: list[Difference] = []
    remaining: list[FirewallRule] = list(got.rules)
    for rule in want.rules:
        match = next((r for r in remaining if replace(r, enabled=rule.enabled) == rule), None)
        if match is None:
            out.append(Difference(f"firewall rule {rule.identity.describe()}", "present", "absent"))
            continue
        remaining.remove(match)
        if match.enabled != rule.enabled:
            state = {True: "enabled", False: "disabled"}
            out.append(
                Difference(
                    f"firewall rule {rule.identity.describe()}",
                    state[rule.enabled],
                    state[match.enabled],
                )
            )
    return out


# ---------------------------------------------------------------- reads


def _read_record(result: OpResult) -> ReadRecord:
    op = result.operation
    return ReadRecord(
        operation=_describe(op),
        ok=result.ok,
        error_kind=result.error_kind,
        error=result.error,
        summary=_summary(result) if result.ok else "",
    )


def _describe(op: Operation) -> str:
    values = ", ".join(str(getattr(op, f.name)) for f in fields(op))
    return f"{type(op).__name__}({values})"


def _summary(result: OpResult) -> str:
    data = result.data
    if isinstance(data, Facts):
        return (
            f"{data.caption.strip()} {data.os_version}, PowerShell {data.ps_version}, "
            f"{data.language}, domain {data.domain}, role {data.domain_role}"
        )
    if isinstance(data, KeyState):
        if not data.exists:
            return "key absent"
        return f"{len(data.values)} value(s)"
    if isinstance(data, GroupState):
        return f"{data.name}: {len(data.members)} member(s)"
    if isinstance(data, RuleGroupState):
        return f"{len(data.rules)} rule(s)"
    if isinstance(data, RegistryPolicy):
        # What RSoP holds for the keys raorch writes (docs/windows.md, section 15).
        logging = "on" if data.logging else "off"
        logged = "a logged session" if data.logged else "no logged session"
        return f"RSoP logging {logging}, {logged}, {len(data.settings)} setting(s)"
    if isinstance(data, str):
        return data
    return ""


def _expected_failure(record: ReadRecord) -> bool:
    """A legacy host has no HNetCfg.FwPolicy2: GetFirewallRules answers NotFound by contract."""
    return record.error_kind is ErrorKind.NOT_FOUND and record.operation.startswith(
        "GetFirewallRules"
    )
