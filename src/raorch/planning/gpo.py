"""The playbook against what Group Policy sets: per value raorch would write, does a GPO already
set the same data (compliant through that GPO: nothing to write), or other data (raorch's
write would be undone at the GPO's next refresh)? docs/windows.md, section 15;
docs/planning.md, "Group Policy".

A value is the playbook's when the desired state names it: a policy value, an entry of a list
(RAUnsolicit, the legacy firewall lists), or a value the playbook deletes (the disabled policy,
helpers not in the exact list). Values raorch does not write are none of its business.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from raorch.models.remote import RegValue
from raorch.planning.desired import DesiredList, DesiredState, DesiredValue
from raorch.planning.rsop import GpoValue, GroupPolicy
from raorch.planning.windows import list_cache


class GpoRelation(StrEnum):
    SAME = "same"  # the GPO sets what the playbook wants: compliant through the GPO
    CONFLICT = "conflict"  # the GPO sets something else: its refresh undoes raorch's write


@dataclass(frozen=True, slots=True)
class GpoFinding:
    """One value the playbook writes that a GPO manages."""

    key: str
    name: str
    gpo: str  # the GPO's display name
    relation: GpoRelation
    found: str  # what the GPO sets, for people ("REG_DWORD 0", "absent (the GPO deletes it)")
    wanted: str  # what the playbook wants, likewise
    why: str = ""  # for a conflict the GPO does not name directly (a list it writes)

    @property
    def item(self) -> str:
        return rf"{self.key}\{self.name}"

    @property
    def same(self) -> bool:
        return self.relation is GpoRelation.SAME

    def describe(self) -> str:
        if self.same:
            return f'{self.item}: compliant through GPO "{self.gpo}" ({self.found})'
        because = self.why or f"it sets {self.found}"
        return (
            f'{self.item}: GPO "{self.gpo}" overrides it ({because}; the playbook wants '
            f"{self.wanted}): a write by raorch would be undone at the next Group Policy refresh"
        )


def _wanted(value: RegValue | None) -> str:
    return "absent" if value is None else GpoValue("", "", "", value=value).describe()


def _finding(key: str, name: str, setting: GpoValue, wanted: RegValue | None) -> GpoFinding:
    if setting.deleted:
        same = wanted is None
    else:
        # Data raorch cannot decode is never taken for the playbook's.
        same = setting.value is not None and setting.value == wanted
    relation = GpoRelation.SAME if same else GpoRelation.CONFLICT
    return GpoFinding(key, name, setting.gpo, relation, setting.describe(), _wanted(wanted))


def gpo_findings(desired: DesiredState, policy: GroupPolicy | None) -> tuple[GpoFinding, ...]:
    """Every value of ``desired`` that a GPO manages, with whether it agrees; empty when what
    Group Policy sets is unknown (never guessed)."""
    if policy is None or not policy.known:
        return ()
    found: dict[str, GpoFinding] = {}
    for item in desired.items:
        if isinstance(item, DesiredValue):
            setting = policy.get(item.key, item.name)
            if setting is not None:
                f = _finding(item.key, item.name, setting, item.value)
                found[f.item.casefold()] = f
        elif isinstance(item, DesiredList):
            for f in _list_findings(item, policy):
                found[f.item.casefold()] = f
    return tuple(found.values())


def _list_findings(item: DesiredList, policy: GroupPolicy) -> list[GpoFinding]:
    cache = list_cache(item.key)
    settings = [
        s for s in policy.under(item.key) if cache is None or s.name.casefold() != cache.casefold()
    ]
    # A GPO that writes entries of a list key replaces the key's values at each refresh (the
    # list policies' **delvals., docs/windows.md, sections 12 and 15; UNCONFIRMED for the XP
    # firewall lists): an entry the playbook adds and that GPO does not set would be deleted.
    owner = next((s.gpo for s in settings if not s.deleted), None)
    out: list[GpoFinding] = []
    listed = {n.casefold() for n in item.values}
    for name, value in item.values.items():
        setting = policy.get(item.key, name)
        if setting is not None:
            out.append(_finding(item.key, name, setting, value))
        elif owner is not None:
            out.append(
                GpoFinding(
                    item.key,
                    name,
                    owner,
                    GpoRelation.CONFLICT,
                    "absent",
                    _wanted(value),
                    why="it writes this list without this entry, so its refresh deletes it",
                )
            )
    if item.exact:
        # The playbook is the whole list: an entry a GPO sets and the playbook does not list
        # would be deleted by raorch and written back by the GPO.
        for setting in settings:
            if setting.name.casefold() not in listed and not setting.deleted:
                out.append(_finding(item.key, setting.name, setting, None))
    return out
