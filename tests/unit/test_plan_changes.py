"""The change types own their behaviour: how each reads as a difference, the state it leaves,
its journal JSON and its line in `raorch plan` (no isinstance chain decides it for them)."""

from __future__ import annotations

import json

from test_plan_fixtures import RA_GROUP, TCP_IN_ACTIVE, TS, dw, w10_host

from raorch.cli.plan import change_json, change_line
from raorch.engine.report import change_line as report_line
from raorch.planning.plan import (
    MemberChange,
    RuleChange,
    ValueChange,
    apply_changes,
    changes_from_json,
    changes_to_json,
    difference_of,
)
from raorch.planning.restore import restore_plan

HELPERS_SID = "S-1-5-21-1-2-3-1001"
ADMINISTRATORS = "S-1-5-32-544"
VALUE = ValueChange(TS, "fAllowUnsolicited", None, dw(1))
MEMBER = MemberChange(ADMINISTRATORS, "CORP\\RA-Helpers", HELPERS_SID, False, True)
RULE = RuleChange(RA_GROUP, TCP_IN_ACTIVE, False, True)


def test_each_change_reads_as_a_difference_expected_after_found_before() -> None:
    assert [(str(difference_of(c)).split(": ", 1)[1]) for c in (VALUE, MEMBER, RULE)] == [
        "expected REG_DWORD 1, found absent",
        "expected member, found not a member",
        "expected enabled, found disabled",
    ]
    # The change report shows the same words, before -> after.
    assert [(report_line(c).before, report_line(c).after) for c in (VALUE, MEMBER, RULE)] == [
        ("absent", "REG_DWORD 1"),
        ("not a member", "member"),
        ("disabled", "enabled"),
    ]


def test_each_change_has_its_plan_line_and_json() -> None:
    assert [change_line(c) for c in (VALUE, MEMBER, RULE)] == [
        f"set {TS} | fAllowUnsolicited: absent -> REG_DWORD 1",
        f"add member CORP\\RA-Helpers ({HELPERS_SID}) of group {ADMINISTRATORS}",
        f"enable firewall rule {TCP_IN_ACTIVE.describe()} ({RA_GROUP})",
    ]
    docs = [change_json(c) for c in (VALUE, MEMBER, RULE)]
    assert [d["kind"] for d in docs] == ["value", "member", "rule"]
    assert docs[0]["before"] == "absent" and docs[0]["after"] == "REG_DWORD 1"
    assert docs[1]["add"] is True and docs[1]["sid"] == HELPERS_SID
    assert docs[2]["before"] is False and docs[2]["after"] is True
    assert all(
        d["description"] == change_line(c) for d, c in zip(docs, (VALUE, MEMBER, RULE), strict=True)
    )
    deletion = ValueChange(TS, "fAllowUnsolicited", dw(1), None)
    assert change_line(deletion) == f"delete {TS} | fAllowUnsolicited: REG_DWORD 1 -> absent"


def test_the_journal_json_round_trips_by_kind() -> None:
    text = changes_to_json([VALUE, MEMBER, RULE])
    assert [raw["kind"] for raw in json.loads(text)] == ["value", "member", "rule"]
    assert changes_from_json(text) == (VALUE, MEMBER, RULE)


def test_applied_changes_restore_to_the_original() -> None:
    original = w10_host().snapshot()
    value = ValueChange(TS, "fAllowUnsolicited", original.value(TS, "fAllowUnsolicited"), dw(7))
    after = apply_changes(original, [value])
    assert after.value(TS, "fAllowUnsolicited") == dw(7)
    restore = restore_plan(original, after, [value])
    assert restore.changes == (value.restoring(original, after, force=False)[0],)
    assert apply_changes(after, restore.changes).value(TS, "fAllowUnsolicited") == (
        original.value(TS, "fAllowUnsolicited")
    )
    # Someone else's data since: a conflict that names what raorch wrote and what is there.
    other = apply_changes(after, [ValueChange(TS, "fAllowUnsolicited", dw(7), dw(3))])
    conflict = restore_plan(original, other, [value]).conflicts
    assert [str(c) for c in conflict] == [f"{value.item}: expected REG_DWORD 7, found REG_DWORD 3"]
