"""The live dashboard: a rich renderable of ``RolloutFigures`` and the ``Dashboard`` that owns
``rich.live.Live`` while a rollout or rollback runs.

Threads: the Live runs with ``auto_refresh=False``, so rich starts no refresh thread. Frames are
drawn on the engine's event-loop thread only: when an event arrives and the last frame is older
than a quarter second, and from a ``loop.call_later`` timer so that elapsed time and ETA keep
moving while every host is slow. The view is therefore written and read on one thread: no lock,
and no frame can show a wave's counts and its in-flight set from two different moments. Engine
worker threads never touch rich. A frame of 10,000 hosts costs the same as a frame of ten: the
view is aggregated, and a frame only formats a few dozen lines.

Layout (fits 80x24; sections shrink to the height the terminal has):
header (id, state, elapsed; playbook and inventory), one row per wave, the rates line, the last
failures, the refusals grouped by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from raorch.cli.plain import (
    PlainLines,
    clock_text,
    duration_text,
    percent_text,
    rate_text,
    say,
    site_text,
)
from raorch.cli.view import GateFigures, RolloutFigures, RolloutView, WaveFigures
from raorch.models.events import (
    Event,
    GateEvaluated,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    Subscriber,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, WaveState

REFRESH_PER_SECOND = 4.0  # the "a few times a second"; more only costs the event loop

STATE_STYLE = {
    WaveState.PENDING: "dim",
    WaveState.RUNNING: "bold cyan",
    WaveState.DONE: "green",
    WaveState.HALTED: "bold red",
    WaveState.CANCELED: "yellow",
    WaveState.PARTIAL: "yellow",
    WaveState.ROLLED_BACK: "magenta",
}

# The four outcome columns of a wave row, by run kind. Rollback's "restored" hosts are
# ROLLED_BACK and its refusals are CONFLICT (someone changed the value since the rollout).
COLUMNS: Mapping[RunKind, tuple[tuple[str, Outcome], ...]] = {
    RunKind.ROLLOUT: (
        ("chg", Outcome.CHANGED),
        ("same", Outcome.UNCHANGED),
        ("skip", Outcome.SKIPPED),
        ("fail", Outcome.FAILED),
    ),
    RunKind.ROLLBACK: (
        ("back", Outcome.ROLLED_BACK),
        ("same", Outcome.UNCHANGED),
        ("conf", Outcome.CONFLICT),
        ("fail", Outcome.FAILED),
    ),
    RunKind.VERIFY: (
        ("ok", Outcome.COMPLIANT),
        ("drift", Outcome.DRIFTED),
        ("ref", Outcome.REFUSED),
        ("unrch", Outcome.UNREACHABLE),
    ),
}

# ---------------------------------------------------------------- deciding


def should_use_dashboard(
    no_dashboard: bool, stream: TextIO, environ: Mapping[str, str] | None = None
) -> bool:
    """The live view only on a terminal that can redraw and may use colour.

    ``NO_COLOR`` (https://no-color.org: set and not empty) and ``TERM=dumb`` ask for plain
    output; so does a pipe or a file, where a redrawn screen would be garbage.
    """
    env = os.environ if environ is None else environ
    if no_dashboard:
        return False
    if env.get("NO_COLOR"):
        return False
    if env.get("TERM", "") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ---------------------------------------------------------------- drawing


def _gate_cell(gate: GateFigures | None) -> Text:
    if gate is None:
        return Text("-", style="dim")
    # "failure share <= threshold ok" reads as the rule itself: the gate holds up to the max.
    relation = "≤" if gate.failure_percentage <= gate.max_fail_percentage else ">"
    figures = (
        f"{percent_text(gate.failure_percentage)}{relation}{percent_text(gate.max_fail_percentage)}"
    )
    verdict = Text(" ok", style="green") if gate.held else Text(" FAIL", style="bold red")
    return Text.assemble(figures, verdict)


def _count_cell(n: int, style: str = "") -> Text:
    return Text(str(n), style=style if n else "dim")


# The bar's least useful width: below it, a narrow terminal drops the bar first.
BAR_MIN = 8


def _row_texts(figures: RolloutFigures, wave: WaveFigures) -> list[str]:
    """A running or finished wave's cells as text, in column order (bar excluded)."""
    columns = COLUMNS.get(figures.kind, COLUMNS[RunKind.ROLLOUT])
    return [
        wave.name,
        wave.state.value,
        f"{wave.done}/{wave.total}",
        *(str(wave.count(o)) for _, o in columns),
        str(wave.in_flight),
        _gate_cell(wave.gate).plain,
    ]


def _table_width(figures: RolloutFigures, waves: list[WaveFigures]) -> int:
    """The width the table needs without its bar: every cell whole, with the table's padding
    (one column on each side of a cell, none at the edges: two between cells)."""
    columns = COLUMNS.get(figures.kind, COLUMNS[RunKind.ROLLOUT])
    titles = ["wave", "state", "done/total", *(t for t, _ in columns), "busy", "gate"]
    widths = [len(t) for t in titles]
    for wave in waves:
        if wave.state is WaveState.PENDING:
            cells = [wave.name, wave.state.value]
        else:
            cells = _row_texts(figures, wave)
        widths = [max(w, len(c)) for w, c in zip(widths, [*cells, *[""] * 9], strict=False)]
    return sum(widths) + 2 * (len(widths) - 1)


def _waves_stacked(figures: RolloutFigures, budget: int, width: int) -> list[Text]:
    """A terminal too narrow for the table: each wave on two lines (three when even its
    first line does not fit the gate), every figure labelled, nothing cut; as many waves as
    ``budget`` lines hold, around the one running."""
    count = len(figures.waves)
    while True:
        lines = _stacked_lines(figures, _waves_to_show(figures.waves, count), width)
        if len(lines) <= budget or count <= 1:
            return lines
        count -= 1


def _stacked_lines(figures: RolloutFigures, shown: list[WaveFigures], width: int) -> list[Text]:
    columns = COLUMNS.get(figures.kind, COLUMNS[RunKind.ROLLOUT])
    lines: list[Text] = []
    for wave in shown:
        state = Text(wave.state.value, style=STATE_STYLE[wave.state])
        if wave.state is WaveState.PENDING:
            lines.append(_one_line(Text.assemble((wave.name, "bold"), " ", state)))
            continue
        head = Text.assemble((wave.name, "bold"), " ", state, f" {wave.done}/{wave.total}")
        gate = Text.assemble("gate ", _gate_cell(wave.gate))
        counts = Text("  ")
        for title, outcome in columns:
            counts.append(f"{title} ")
            counts.append(
                _count_cell(wave.count(outcome), "red" if outcome is Outcome.FAILED else "")
            )
            counts.append(" ")
        counts.append("busy ")
        counts.append(_count_cell(wave.in_flight, "cyan"))
        if head.cell_len + 2 + gate.cell_len <= width:
            lines.append(_one_line(Text.assemble(head, "  ", gate)))
            lines.append(_one_line(counts))
        else:
            lines.append(_one_line(head))
            lines.append(_one_line(counts))
            lines.append(_one_line(Text.assemble("  ", gate)))
    hidden = len(figures.waves) - len(shown)
    if hidden:
        lines.append(Text(f"+{hidden} more", style="dim"))
    return lines


def _waves_view(figures: RolloutFigures, rows: int, width: int) -> tuple[RenderableType, int]:
    """The waves as wide as the terminal allows, and the lines they take: the table with its
    bar; without the bar; stacked lines (the bar goes first, then the table's layout, never a
    figure). ``rows``: the lines for the waves, the table's header included."""
    table_rows = max(1, min(len(figures.waves), rows - 1))
    needed = _table_width(figures, _waves_to_show(figures.waves, table_rows))
    if width >= needed:
        bar = width >= needed + 2 + BAR_MIN
        table = _waves_table(figures, table_rows, bar=bar)
        return table, 1 + min(len(figures.waves), table_rows)
    lines = _waves_stacked(figures, rows, width)
    return Group(*lines), len(lines)


def _waves_table(figures: RolloutFigures, rows: int, bar: bool = True) -> Table:
    table = Table(
        box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold", expand=True
    )
    table.add_column("wave", no_wrap=True, overflow="ellipsis", max_width=12 if bar else None)
    table.add_column("state", no_wrap=True, width=11 if bar else None)  # "rolled_back"
    if bar:
        table.add_column("", no_wrap=True, ratio=1, min_width=4)  # the bar: whatever is left
    table.add_column("done/total", no_wrap=True, justify="right")
    columns = COLUMNS.get(figures.kind, COLUMNS[RunKind.ROLLOUT])
    for title, _ in columns:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("busy", justify="right", no_wrap=True)  # in flight
    table.add_column("gate", no_wrap=True)
    shown = _waves_to_show(figures.waves, rows)
    for wave in shown:
        progress = [ProgressBar(total=max(wave.total, 1), completed=wave.done)] if bar else []
        if wave.state is WaveState.PENDING:
            table.add_row(wave.name, Text(wave.state.value, style=STATE_STYLE[wave.state]))
            continue
        cells = [
            _count_cell(wave.count(o), "red" if o is Outcome.FAILED else "") for _, o in columns
        ]
        table.add_row(
            wave.name,
            Text(wave.state.value, style=STATE_STYLE[wave.state]),
            *progress,
            f"{wave.done}/{wave.total}",
            *cells,
            _count_cell(wave.in_flight, "cyan"),
            _gate_cell(wave.gate),
        )
    hidden = len(figures.waves) - len(shown)
    if hidden:
        table.add_row(Text(f"+{hidden} more", style="dim"))
    return table


def _waves_to_show(waves: tuple[WaveFigures, ...], rows: int) -> list[WaveFigures]:
    """All waves if they fit in ``rows``; otherwise those around the last one that ran, in
    order, with one row left for the "+N more" line."""
    if len(waves) <= rows:
        return list(waves)
    rows = max(1, rows - 1)
    active = [i for i, w in enumerate(waves) if w.state is not WaveState.PENDING]
    centre = active[-1] if active else 0
    start = max(0, min(centre - rows // 2, len(waves) - rows))
    return list(waves[start : start + rows])


def _one_line(text: Text) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class DashboardFrame:
    """One frame: the figures laid out to the width and height the console offers."""

    def __init__(self, figures: RolloutFigures) -> None:
        self.figures = figures

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        f = self.figures
        height = options.height or options.max_height or console.height
        width = options.max_width
        state = "running" if f.running else ("finished" if f.finished_at else "not running")
        lines: list[RenderableType] = [
            # The state and the clock first: a narrow terminal cuts the rollout id, not them.
            _one_line(
                Text.assemble(
                    (f"raorch {f.kind.value} ", "bold"),
                    f"{state}  elapsed {clock_text(f.elapsed)}  ",
                    (f.rollout_id, "bold"),
                )
            ),
            _one_line(Text(f"playbook {f.playbook}  inventory {f.inventory}", style="dim")),
        ]
        # A run through workers: a line per site (as many as the height allows), under the
        # waves.
        site_rows = min(len(f.sites), max(0, (height - len(lines) - 3) // 3))
        fixed = len(lines) + 1 + site_rows  # header lines, the rates line, the sites
        # Waves take what they need (the table: a line each and its header), leaving at least
        # a few rows to the failures and refusals.
        reserve = 4 if f.failures or f.refusals else 0
        waves, wave_rows = _waves_view(f, max(2, height - fixed - reserve), width)
        lines.append(waves)
        for site in f.sites[:site_rows]:
            style = "bold red" if site.no_worker_since is not None else ""
            lines.append(_one_line(Text(site_text(site), style=style)))
        lines.append(
            _one_line(
                Text(
                    f"{rate_text(f.throughput)}  ETA {clock_text(f.eta)}  per host p50 "
                    f"{duration_text(f.latency_p50)}  p95 {duration_text(f.latency_p95)}"
                )
            )
        )
        room = height - fixed - wave_rows
        fail_rows, refusal_rows = _share(room, len(f.failures), len(f.refusals))
        if fail_rows:
            lines.append(
                _one_line(Text(f"last failures ({f.failed_hosts} failed)", style="bold red"))
            )
            for line in f.failures[: fail_rows - 1]:
                stage = "" if line.stage is None else f"{line.stage.value}: "
                lines.append(
                    _one_line(
                        Text.assemble(
                            "  ",
                            (line.host, "bold"),
                            f"  {line.wave}  ",
                            (stage, "red"),
                            line.reason,
                        )
                    )
                )
        if refusal_rows:
            refused = sum(g.count for g in f.refusals)
            lines.append(_one_line(Text(f"refused ({refused} hosts)", style="bold yellow")))
            groups = f.refusals
            if len(groups) > refusal_rows - 1:
                keep = max(0, refusal_rows - 2)
                rest = groups[keep:]
                for group in groups[:keep]:
                    lines.append(_one_line(Text(f"  {group.reason}: {group.count}")))
                lines.append(
                    _one_line(
                        Text(
                            f"  {len(rest)} other reasons: {sum(g.count for g in rest)}",
                            style="dim",
                        )
                    )
                )
            else:
                for group in groups:
                    lines.append(_one_line(Text(f"  {group.reason}: {group.count}")))
        yield Group(*lines)


def _share(room: int, failures: int, refusals: int) -> tuple[int, int]:
    """Rows (heading included) for the failures and the refusals sections within ``room``."""
    want_f = failures + 1 if failures else 0
    want_r = refusals + 1 if refusals else 0
    if want_f + want_r <= room:
        return want_f, want_r
    if not want_r:
        return (min(want_f, room) if room >= 2 else 0), 0
    if not want_f:
        return 0, (min(want_r, room) if room >= 2 else 0)
    if room < 4:  # no space for two sections: failures matter more
        return (room if room >= 2 else 0), 0
    # Refusals are grouped, so a few lines say most; failures take the rest.
    r = min(want_r, max(2, room // 3))
    f = min(want_f, room - r)
    return f, min(want_r, room - f)


# ---------------------------------------------------------------- the live display


class Dashboard:
    """Owns ``rich.live.Live`` for one command. Use as a context manager; call it with each
    engine event (it is the subscriber: it updates the view, then redraws at most
    ``refresh_per_second`` times a second)."""

    def __init__(
        self,
        console: Console,
        view: RolloutView,
        refresh_per_second: float = REFRESH_PER_SECOND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.console = console
        self.view = view
        self.interval = 1.0 / refresh_per_second
        self.clock = clock
        self._live = Live(
            console=console,
            auto_refresh=False,  # no rich thread: frames are drawn on the caller's thread
            transient=False,  # the last frame stays on screen as the record of the run
            vertical_overflow="crop",
            get_renderable=self._frame,
        )
        self._last_draw = -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self.failed: Exception | None = None  # why drawing stopped, if it did
        self._plain = PlainLines(console, view)

    def _frame(self) -> RenderableType:
        return DashboardFrame(self.view.figures(self.clock()))

    def __enter__(self) -> Dashboard:
        self._live.start(refresh=False)
        self.refresh()  # guarded, unlike Live.start's own first frame
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_timer()
        if self.failed is None:
            try:
                self._live.stop()  # draws the final frame
            except Exception as error:  # see refresh()
                self.failed = error
        if self.failed is not None:
            say(
                self.console,
                f"the dashboard stopped drawing ({type(self.failed).__name__}: {self.failed}); "
                "the run went on and the journal has every host. Please report this bug; "
                "use --no-dashboard meanwhile.",
            )

    def refresh(self) -> None:
        if self.failed is not None:
            return
        self._last_draw = time.monotonic()
        try:
            self._live.refresh()
        except Exception as error:
            # A drawing bug must not abort a rollout of thousands of hosts half-way (the
            # engine does not guard its subscribers): fall back to plain lines instead.
            self.failed = error
            self._stop_timer()
            with contextlib.suppress(Exception):
                self._live.stop()

    def __call__(self, event: Event) -> None:
        if self.failed is not None:
            self._plain(event)
            return
        self.view(event)
        milestone = isinstance(
            event, (RolloutStarted, WaveStarted, GateEvaluated, WaveFinished, RolloutFinished)
        )
        if milestone or time.monotonic() - self._last_draw >= self.interval:
            self.refresh()
        if isinstance(event, RolloutFinished):
            self._stop_timer()  # the engine's loop may close right after this event
        elif self._timer is None and self.failed is None:
            self._start_timer()

    def _start_timer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # events fed without an event loop (tests, replay): no ticking
            return
        self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if time.monotonic() - self._last_draw >= self.interval * 0.9:
            self.refresh()
        if self.failed is None:
            self._start_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@contextlib.contextmanager
def live_output(console: Console, view: RolloutView, enabled: bool) -> Iterator[Subscriber]:
    """The subscriber to add to ``RunOptions.subscribers``: the live dashboard when
    ``enabled`` (see ``should_use_dashboard``), plain host lines otherwise. Either one feeds
    ``view``; print the end summary with ``raorch.cli.plain.print_summary(console, view)``."""
    if enabled:
        with Dashboard(console, view) as dashboard:
            yield dashboard
    else:
        yield PlainLines(console, view)
