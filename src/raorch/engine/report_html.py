"""The change report as one self-contained HTML file: Jinja2 (autoescaping) over the typed
``ChangeReport``, styles, charts and a few lines of script inline, nothing fetched.

The charts are SVG drawn by the template from the geometry computed here (``LineChart``,
``BarChart``) rather than by a chart library: three plain charts (step lines, stacked bars,
bars) are a few dozen lines, every label goes through the same autoescaping as the rest of the
page, and the file needs no script to show them (SVG chart libraries for Python either emit
script and styles fetched from the network by default, or a raster image, and would each be
one more dependency to pin for what is simple geometry).

Size: each host is one table row; its before/after table is not repeated per host but kept
once per distinct change list (``ChangeSet``), which a host's row opens (a copy made by the
inline script when it is expanded, a link without script). 10,000 hosts: see docs/report.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from raorch.engine.report import STATUS_ORDER, ChangeReport, HostStatus, PlatformCount

MAX_POINTS = 400  # points of one wave's line; more hosts are sampled evenly (the last kept)
WIDTH = 900

# One colour per standing, the same in the summary, the legends and the bars.
STATUS_COLOURS: dict[HostStatus, str] = {
    HostStatus.CHANGED: "#2e7d32",
    HostStatus.UNCHANGED: "#90a4ae",
    HostStatus.REFUSED: "#f9a825",
    HostStatus.FAILED: "#c62828",
    HostStatus.ROLLED_BACK: "#6a1b9a",
    HostStatus.CONFLICT: "#ef6c00",
    HostStatus.ROLLBACK_FAILED: "#4e342e",
    HostStatus.IN_FLIGHT: "#1565c0",
}
WAVE_COLOURS = ("#1565c0", "#00838f", "#2e7d32", "#6d4c41", "#5e35b1", "#ad1457")
ROLLBACK_COLOUR = STATUS_COLOURS[HostStatus.ROLLED_BACK]


# ---------------------------------------------------------------- chart geometry


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    colour: str
    points: tuple[tuple[float, float], ...]  # SVG coordinates
    hosts: int  # hosts this line counts
    dashed: bool = False

    @property
    def svg_points(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass(frozen=True, slots=True)
class Pause:
    """The time between one wave's last host and the next wave's first: the flat stretch."""

    x1: float
    x2: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # SVG coordinate
    text: str


@dataclass(frozen=True, slots=True)
class LineChart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    series: tuple[Series, ...]
    pauses: tuple[Pause, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    start: float  # wall-clock time of x = 0


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    width: float
    colour: str
    text: str  # the tooltip: what and how many


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    title: str  # the full label, for the tooltip
    y: float
    segments: tuple[Segment, ...]
    total: int
    end: float  # x after the last segment (for the count)


@dataclass(frozen=True, slots=True)
class BarChart:
    """Each bar under its label (labels are long: Windows captions, reasons)."""

    width: int
    height: int
    bar_height: int
    bars: tuple[Bar, ...]


LABEL_CHARS = 140  # a longer label is cut (the full text is in the tooltip and the tables)
LABEL_HEIGHT = 15


def _bars(rows: Sequence[tuple[str, tuple[tuple[str, str, int], ...]]]) -> BarChart | None:
    """Horizontal bars, each of (colour, what, count) segments, on one scale."""
    if not rows:
        return None
    bar_height, gap = 16, 8
    plot = WIDTH - 60
    biggest = max(sum(n for _, _, n in segments) for _, segments in rows) or 1
    bars: list[Bar] = []
    row_height = LABEL_HEIGHT + bar_height + gap
    for i, (label, segments) in enumerate(rows):
        x = 0.0
        top = i * row_height + LABEL_HEIGHT
        parts: list[Segment] = []
        for colour, what, n in segments:
            width = n / biggest * plot
            parts.append(Segment(x, width, colour, f"{what}: {n}"))
            x += width
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        total = sum(n for _, _, n in segments)
        bars.append(Bar(short, label, top, tuple(parts), total, x))
    return BarChart(WIDTH, len(rows) * row_height, bar_height, tuple(bars))


def _duration_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _sample(values: Sequence[float], limit: int) -> list[tuple[int, float]]:
    """(rank, value) of at most ``limit`` values, evenly spread, the last always kept."""
    n = len(values)
    if n <= limit:
        return list(enumerate(values, 1))
    picks = sorted({math.ceil((i + 1) * n / limit) for i in range(limit)})
    return [(k, values[k - 1]) for k in picks]


def line_chart(report: ChangeReport) -> LineChart | None:
    """Hosts finished over time, cumulative over the rollout, one line per wave (so a pause
    between waves is a gap at the same height), and the hosts rolled back (dashed)."""
    waves = [w for w in report.wave_times if w.finished]
    if not waves:
        return None
    times = [t for w in waves for t in w.finished] + list(report.rollback_times)
    start, end = min(times), max(times)
    span = max(end - start, 1.0)
    total = sum(len(w.finished) for w in waves)
    top_count = max(total, len(report.rollback_times), 1)
    left, top, plot_w, plot_h = 56, 16, WIDTH - 56 - 24, 220

    def x(t: float) -> float:
        return left + (t - start) / span * plot_w

    def y(n: float) -> float:
        return top + plot_h - n / top_count * plot_h

    series: list[Series] = []
    pauses: list[Pause] = []
    done = 0
    previous_end: float | None = None
    ordered = sorted(waves, key=lambda w: w.finished[0])
    colour_of = {w.wave: WAVE_COLOURS[i % len(WAVE_COLOURS)] for i, w in enumerate(waves)}
    for w in ordered:
        first = w.finished[0]
        if previous_end is not None and first > previous_end:
            text = _duration_text(first - previous_end)
            # Named only where the gap is wide enough to read (a back-to-back demo has none).
            wide = x(first) - x(previous_end) >= 60
            pauses.append(Pause(x(previous_end), x(first), y(done), text if wide else ""))
        points = [(x(first), y(done))]
        points += [(x(t), y(done + rank)) for rank, t in _sample(w.finished, MAX_POINTS)]
        series.append(Series(w.wave, colour_of[w.wave], tuple(points), len(w.finished)))
        done += len(w.finished)
        previous_end = w.finished[-1]
    if report.rollback_times:
        back = report.rollback_times
        points = [(x(back[0]), y(0))]
        points += [(x(t), y(rank)) for rank, t in _sample(back, MAX_POINTS)]
        series.append(Series("rolled back", ROLLBACK_COLOUR, tuple(points), len(back), True))
    x_ticks = tuple(
        Tick(left + i / 4 * plot_w, "start" if i == 0 else "+" + _duration_text(i / 4 * span))
        for i in range(5)
    )
    step = max(1, math.ceil(top_count / 4))
    counts = [*range(0, top_count, step), top_count]
    if len(counts) > 2 and top_count - counts[-2] < step / 2:
        del counts[-2]  # too close to the top one to read
    y_ticks = tuple(Tick(y(n), str(n)) for n in counts)
    return LineChart(
        WIDTH,
        top + plot_h + 40,
        left,
        top,
        plot_w,
        plot_h,
        tuple(series),
        tuple(pauses),
        x_ticks,
        y_ticks,
        start,
    )


def platform_chart(platforms: Sequence[PlatformCount]) -> BarChart | None:
    return _bars(
        [
            (
                f"{p.label} [{p.profile}]" if p.profile else p.label,
                tuple((STATUS_COLOURS[s], s.value, n) for s, n in p.counts),
            )
            for p in platforms
        ]
    )


def reason_chart(report: ChangeReport) -> BarChart | None:
    return _bars(
        [
            (
                f"{r.status.value}: {r.reason}",
                ((STATUS_COLOURS[r.status], r.status.value, r.count),),
            )
            for r in report.reasons
        ]
    )


# ---------------------------------------------------------------- the page


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("raorch.engine", "templates"),
        autoescape=True,  # every value of the report is text, never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["slug"] = lambda s: "".join(c if c.isalnum() else "-" for c in str(s))
    return env


def render_report(report: ChangeReport) -> str:
    """The HTML page of a report (a str; the caller writes it)."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        status_order=STATUS_ORDER,
        colours=STATUS_COLOURS,
        timeline=line_chart(report),
        platforms=platform_chart(report.platforms),
        reasons=reason_chart(report),
        HostStatus=HostStatus,
    )
