"""Wave math and gate decisions: pure unit and property tests."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raorch.models.inventory import Batch
from raorch.models.outcomes import Outcome
from raorch.planning import waves


def test_no_batch_is_one_batch() -> None:
    assert waves.batch_sizes(7, None) == [7]


def test_fixed_batch_with_remainder() -> None:
    assert waves.batch_sizes(10, Batch(size=4)) == [4, 4, 2]


def test_percent_batch_rounds_up() -> None:
    # 25% of 10 hosts is 2.5: a batch of 3, so 4 batches (3, 3, 3, 1).
    assert waves.batch_sizes(10, Batch(percent=25)) == [3, 3, 3, 1]


def test_empty_wave_has_no_batch() -> None:
    assert waves.batch_sizes(0, Batch(size=3)) == []


@given(
    total=st.integers(min_value=0, max_value=5000),
    size=st.one_of(st.none(), st.integers(min_value=1, max_value=6000)),
    percent=st.floats(min_value=0.01, max_value=100),
)
def test_batches_cover_the_wave_exactly(total: int, size: int | None, percent: float) -> None:
    batch = Batch(size=size) if size is not None else Batch(percent=percent)
    sizes = waves.batch_sizes(total, batch)
    assert sum(sizes) == total
    assert all(s >= 1 for s in sizes)
    if sizes:
        # every batch but the last has the same size, the last is not larger
        assert len(set(sizes[:-1])) <= 1
        assert sizes[-1] <= sizes[0]


@given(st.lists(st.text(min_size=1, max_size=5), max_size=200), st.integers(1, 50))
def test_split_keeps_order(hosts: list[str], size: int) -> None:
    parts = waves.split(hosts, Batch(size=size))
    assert [h for part in parts for h in part] == hosts


def test_zero_threshold_fails_on_any_failure() -> None:
    assert waves.evaluate(finished=100, failed=0, max_fail_percentage=0).held
    assert not waves.evaluate(finished=100, failed=1, max_fail_percentage=0).held


def test_threshold_is_exceeded_not_reached() -> None:
    # 10 failed of 100 is exactly 10%: the gate holds; 11 does not.
    assert waves.evaluate(100, 10, 10).held
    assert not waves.evaluate(100, 11, 10).held


def test_skipped_counts_only_when_asked() -> None:
    assert not waves.counts_as_failed(Outcome.SKIPPED, False)
    assert waves.counts_as_failed(Outcome.SKIPPED, True)
    assert waves.counts_as_failed(Outcome.FAILED, False)
    assert not waves.counts_as_failed(Outcome.CHANGED, True)


@given(
    finished=st.integers(0, 1000),
    failed_share=st.floats(0, 1),
    unfinished=st.integers(0, 1000),
    threshold=st.floats(0, 100),
)
def test_lost_early_is_never_wrong(
    finished: int, failed_share: float, unfinished: int, threshold: float
) -> None:
    failed = int(finished * failed_share)
    if waves.lost_early(finished, failed, unfinished, threshold):
        # Even if every unfinished host succeeds, the gate fails at the batch's end.
        assert not waves.evaluate(finished + unfinished, failed, threshold).held
    else:
        # There is an ending (all the rest succeed) in which the gate holds.
        assert waves.evaluate(finished + unfinished, failed, threshold).held


def test_canary_at_zero_is_lost_at_first_failure() -> None:
    assert waves.lost_early(finished=1, failed=1, unfinished=9, max_fail_percentage=0)
    assert not waves.lost_early(finished=1, failed=0, unfinished=9, max_fail_percentage=0)
