"""Waves proposed for an imported fleet: ``--waves canary:1%,pilot:10%,broad``.

Each wave but the last takes a share of the fleet: ``NAME:P%`` (P percent of all hosts,
rounded up, at least one host) or ``NAME:N`` (N hosts); the last wave is a bare ``NAME`` and
takes the rest (``rest: true``). Hosts are taken in turn from each group (the host's first
group, in the order groups first appear), so that the first waves sample every group rather
than the first group of the file. A wave left with no host is not written (the loader refuses
empty waves) and the import says so.

The gates are a starting point for review: the first wave halts at its first failure
(``max_fail_percentage: 0``), the others at more than 5%.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from raorch.importers.draft import DraftWave, Notice
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import WAVE_NAME

DEFAULT_WAVES = "canary:1%,pilot:10%,broad"
FIRST_GATE = 0.0
LATER_GATE = 5.0

_SIZE = re.compile(r"(\d+(?:\.\d+)?)(%?)\Z")


@dataclass(frozen=True, slots=True)
class WaveShare:
    name: str
    count: int | None = None  # N hosts
    percent: float | None = None  # P% of the fleet
    # neither: the rest


def _fail(message: str, hint: str) -> InputError:
    return InputError([Problem(Location("--waves"), message, hint)])


def parse_waves(spec: str) -> tuple[WaveShare, ...]:
    """Parse ``--waves``. Raises ``InputError`` naming what is wrong and the form expected."""
    form = "NAME:P% or NAME:N for each wave, then a bare NAME for the last (it takes the rest)"
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise _fail("an empty wave in the list", f"write {form}, e.g. {DEFAULT_WAVES}")
    shares: list[WaveShare] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        name, sep, size = item.partition(":")
        name = name.strip()
        if not WAVE_NAME.match(name):
            raise _fail(
                f"wave name {name!r} is not allowed",
                "start with a letter or digit; letters, digits, '.', '_' and '-' only",
            )
        if name in seen:
            raise _fail(f"wave {name!r} is named twice", "give every wave its own name")
        seen.add(name)
        last = i == len(items) - 1
        if not sep:
            if not last:
                raise _fail(
                    f"wave {name!r} has no size but is not the last one",
                    f"only the last wave takes the rest; write {form}",
                )
            shares.append(WaveShare(name))
            continue
        if last:
            raise _fail(
                f"the last wave {name!r} has a size",
                "the last wave takes every host left: write it as a bare name, e.g. broad",
            )
        match = _SIZE.match(size.strip())
        if not match:
            raise _fail(f"wave {name!r}: size {size.strip()!r} is not P% or N", form)
        number = float(match.group(1))
        if match.group(2):
            if not 0 < number <= 100:
                raise _fail(f"wave {name!r}: {number:g}% is not in 0-100", "e.g. canary:1%")
            shares.append(WaveShare(name, percent=number))
        else:
            if number != int(number) or number < 1:
                raise _fail(f"wave {name!r}: {size.strip()} is not a whole number of hosts", "")
            shares.append(WaveShare(name, count=int(number)))
    return tuple(shares)


def spread(hosts: Sequence[tuple[str, str | None]]) -> list[str]:
    """Host names in turn from each group: ``(name, group)`` pairs, groups in order of first
    appearance, each group's hosts in their order."""
    by_group: dict[str | None, list[str]] = {}
    for name, group in hosts:
        by_group.setdefault(group, []).append(name)
    queues = list(by_group.values())
    out: list[str] = []
    depth = 0
    while len(out) < len(hosts):
        for queue in queues:
            if depth < len(queue):
                out.append(queue[depth])
        depth += 1
    return out


@dataclass(frozen=True, slots=True)
class Proposal:
    waves: tuple[DraftWave, ...]
    dropped: tuple[str, ...]  # waves left without a host

    def notices(self) -> list[Notice]:
        """A warning for each wave left without a host (the importers say so only when some
        host was imported: with none, every wave is empty)."""
        return [
            Problem(
                Location("--waves"),
                f"wave {dropped!r} would have no host: not written",
                "fewer waves, or larger shares, for a fleet this size",
            )
            for dropped in self.dropped
        ]

    def summary(self) -> str:
        """The waves line of an import's summary: each wave and its size."""
        return "waves: " + ", ".join(
            f"{w.name} ({'the rest' if w.rest else len(w.hosts)})" for w in self.waves
        )


def propose(shares: Sequence[WaveShare], hosts: Sequence[tuple[str, str | None]]) -> Proposal:
    """Waves for ``hosts`` (``(name, group)`` pairs, in inventory order)."""
    order = spread(hosts)
    total = len(order)
    taken = 0
    waves: list[DraftWave] = []
    dropped: list[str] = []
    for share in shares:
        gate = FIRST_GATE if not waves else LATER_GATE
        if share.count is None and share.percent is None:
            if taken < total:
                waves.append(DraftWave(share.name, (), True, gate, "every host not named above"))
            else:
                dropped.append(share.name)
            continue
        if share.count is not None:
            want = share.count
            what = f"{share.count} host{'s' if share.count != 1 else ''}"
        else:
            assert share.percent is not None
            want = max(1, math.ceil(total * share.percent / 100))
            what = f"{share.percent:g}% of {total} hosts"
        size = min(want, total - taken)
        if size <= 0:
            dropped.append(share.name)
            continue
        waves.append(DraftWave(share.name, tuple(order[taken : taken + size]), False, gate, what))
        taken += size
    return Proposal(tuple(waves), tuple(dropped))
