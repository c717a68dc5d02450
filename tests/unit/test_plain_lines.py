"""The plain host lines (``--no-dashboard``, pipes): what reaches the operator's terminal."""

from __future__ import annotations

import io

from rich.console import Console

from raorch.cli.plain import PlainLines, host_line, say
from raorch.cli.view import RolloutView
from raorch.models.events import HostFinished
from raorch.models.outcomes import Outcome, Reason, Stage


def _written(text: str) -> str:
    out = io.StringIO()
    say(Console(file=out, force_terminal=True), text)
    return out.getvalue()


def test_a_line_is_written_as_given_with_no_markup_emoji_or_wrapping() -> None:
    line = "pc-[01]  canary  failed  apply: C:\\Windows :smile: " + "x" * 300
    assert _written(line) == line + "\n"


def test_a_hosts_escape_sequences_never_reach_the_terminal() -> None:
    # A reason is the remote side's text: a host could send a terminal escape sequence.
    written = _written("pc-01  canary  failed  apply: \x1b]0;owned\x07 \x9b2J done\r")
    assert "\x1b" not in written and "\x07" not in written and "\x9b" not in written
    assert "\r" not in written
    assert written == "pc-01  canary  failed  apply: \\x1b]0;owned\\x07 \\x9b2J done\n"


def test_a_multi_line_windows_message_keeps_its_lines_and_tabs() -> None:
    assert _written("a\tb\r\nc") == "a\tb\nc\n"


def test_a_finished_host_is_one_line() -> None:
    out = io.StringIO()
    lines = PlainLines(Console(file=out), RolloutView())
    reason = Reason(Stage.APPLY, "Access is denied. [0x80070005]")
    event = HostFinished("r", "canary", "pc-01", Outcome.FAILED, reason, 0.5, 1.0)
    lines(event)
    assert out.getvalue() == host_line(event) + "\n"
    assert out.getvalue() == "pc-01  canary  failed  apply: Access is denied. [0x80070005]\n"
