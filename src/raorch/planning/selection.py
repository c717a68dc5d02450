"""``--limit``: which hosts of a run a user asked for (comma-separated fnmatch patterns)."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase


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
