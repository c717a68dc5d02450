"""The host's cancel flag runs its session's abort once, when set (engine/cancel.py)."""

from __future__ import annotations

from raorch.engine.cancel import Cancel


def test_callbacks_run_once_when_set_and_not_after_unregistering() -> None:
    cancel = Cancel()
    calls: list[str] = []
    cancel.when_set(lambda: calls.append("a"))
    unregister = cancel.when_set(lambda: calls.append("b"))
    unregister()
    assert not cancel.is_set() and calls == []
    cancel.set()
    cancel.set()
    assert cancel.is_set() and calls == ["a"]


def test_a_callback_registered_after_the_deadline_runs_at_once() -> None:
    cancel = Cancel()
    cancel.set()
    calls: list[int] = []
    cancel.when_set(lambda: calls.append(1))
    assert calls == [1]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    cancel = Cancel()
    calls: list[int] = []

    def boom() -> None:
        raise OSError("socket already closed")

    cancel.when_set(boom)
    cancel.when_set(lambda: calls.append(2))
    cancel.set()
    assert calls == [2]
