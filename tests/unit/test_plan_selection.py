"""--limit: comma-separated fnmatch patterns on host names."""

from __future__ import annotations

from raorch.planning.selection import parse_limit, select_hosts, unmatched_patterns

NAMES = ["ws-01", "ws-02", "srv-01", "XP-LEGACY"]


def test_no_limit_selects_everything_in_order() -> None:
    assert select_hosts(NAMES, None) == NAMES
    assert select_hosts(NAMES, " , ") == NAMES


def test_patterns_are_comma_separated_and_case_insensitive() -> None:
    assert parse_limit(" ws-0?, srv-* ") == ("ws-0?", "srv-*")
    assert select_hosts(NAMES, "srv-*,ws-02") == ["ws-02", "srv-01"]
    assert select_hosts(NAMES, "xp-*") == ["XP-LEGACY"]


def test_patterns_that_select_nothing_are_reported() -> None:
    assert unmatched_patterns(NAMES, "ws-*,wz-*") == ("wz-*",)
    assert unmatched_patterns(NAMES, None) == ()
