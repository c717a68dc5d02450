"""``--limit``: which hosts of a run a user asked for (comma-separated fnmatch patterns)."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from raorch.models.errors import InputError, Location, Problem

PATTERN_HINT = "patterns are comma-separated fnmatch patterns on host names (e.g. 'ws-01*,srv-?')"


def parse_limit(text: str | None) -> tuple[str, ...]:
    """``"web-*, db-0?"`` -> ("web-*", "db-0?"); None or blank -> () (no limit)."""
    if text is None:
        return ()
    return tuple(p.strip() for p in text.split(",") if p.strip())


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Case-insensitive, as Windows host names are; no patterns matches everything."""
    patterns = tuple(patterns)
    if not patterns:
        return True
    folded = name.casefold()
    return any(fnmatchcase(folded, p.casefold()) for p in patterns)


def select_hosts(names: Iterable[str], limit: str | None) -> list[str]:
    """The names that ``limit`` selects, in their original order."""
    patterns = parse_limit(limit)
    return [n for n in names if matches(n, patterns)]


def unmatched_patterns(names: Iterable[str], limit: str | None) -> tuple[str, ...]:
    """Patterns that select no host: almost always a typo, worth telling the user."""
    names = tuple(names)
    return tuple(p for p in parse_limit(limit) if not any(matches(n, (p,)) for n in names))


def require_matches(
    names: Iterable[str], limit: str | None, among: str, hint: str = PATTERN_HINT
) -> None:
    """Refuse a ``--limit`` with a pattern that selects none of ``names`` (the hosts ``among``
    says, e.g. "of this run"): an input error (exit 2) naming the patterns."""
    missing = unmatched_patterns(names, limit)
    if missing:
        raise InputError(
            [
                Problem(
                    Location("--limit"),
                    f"pattern(s) {', '.join(missing)} match no host {among}",
                    hint,
                )
            ]
        )
