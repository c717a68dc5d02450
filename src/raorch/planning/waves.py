"""Wave math: batches and the failure gate. Pure functions, no I/O.

The gate (issue 5): it fails when the share of failed hosts among those finished in the wave
exceeds ``max_fail_percentage`` (0 means any failure). It is checked between batches, like
Ansible's ``serial`` + ``max_fail_percentage``; and it also fails early, while a batch is still
running, as soon as the batch can no longer end within the threshold whatever the remaining
hosts do, so that no host starts in a wave that is already lost (a canary with 0% halts at its
first failure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from raorch.models.inventory import Batch
from raorch.models.outcomes import Outcome


def batch_sizes(total: int, batch: Batch | None) -> list[int]:
    """Sizes of the consecutive batches of a wave of ``total`` hosts.

    ``batch: N`` gives batches of N (the last one smaller); ``batch: P%`` gives batches of
    ceil(P% of the wave), at least one host. No batch: the whole wave at once.
    """
    if total <= 0:
        return []
    if batch is None:
        size = total
    elif batch.size is not None:
        size = batch.size
    elif batch.percent is not None:
        size = math.ceil(total * batch.percent / 100)
    else:
        size = total
    size = max(1, min(size, total))
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def split(hosts: Sequence[str], batch: Batch | None) -> list[list[str]]:
    out: list[list[str]] = []
    start = 0
    for size in batch_sizes(len(hosts), batch):
        out.append(list(hosts[start : start + size]))
        start += size
    return out


def counts_as_failed(outcome: Outcome, skipped_counts_as_failed: bool) -> bool:
    if outcome is Outcome.FAILED:
        return True
    return skipped_counts_as_failed and outcome is Outcome.SKIPPED


@dataclass(frozen=True, slots=True)
class GateVerdict:
    finished: int
    failed: int
    failure_percentage: float
    max_fail_percentage: float
    held: bool


def failure_percentage(finished: int, failed: int) -> float:
    return 0.0 if finished == 0 else 100.0 * failed / finished


def evaluate(finished: int, failed: int, max_fail_percentage: float) -> GateVerdict:
    """The gate over the hosts finished so far (at a batch boundary or the wave's end)."""
    share = failure_percentage(finished, failed)
    return GateVerdict(finished, failed, share, max_fail_percentage, share <= max_fail_percentage)


def lost_early(finished: int, failed: int, unfinished: int, max_fail_percentage: float) -> bool:
    """True when the gate must fail at the end of the current batch whatever happens next.

    ``unfinished`` counts the batch's hosts in flight and not yet started. Even if they all
    succeed, the share at the batch's end is failed / (finished + unfinished).
    """
    best_case = failure_percentage(finished + unfinished, failed)
    return best_case > max_fail_percentage
