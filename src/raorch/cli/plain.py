"""Plain output: one line per finished host and a summary at the end, for pipes, logs and
terminals that cannot (``TERM=dumb``) or should not (``NO_COLOR``, ``--no-dashboard``) be
redrawn. The text helpers here are shared with the dashboard so both say the same words.

A host line is ``host  wave  outcome  stage: reason`` (two spaces between fields, the reason
only when there is one), easy to ``grep`` and ``cut``.
"""

from __future__ import annotations

import time

from rich.console import Console

from raorch.cli.view import GateFigures, RolloutFigures, RolloutView, SiteFigures, WaveFigures
from raorch.models.events import Event, HostFinished, RunKind
from raorch.models.outcomes import Outcome, WaveState

SUMMARY_REFUSALS = 10  # reason groups listed in the summary; --json has them all


def host_line(event: HostFinished) -> str:
    fields = [event.host, event.wave, event.outcome.value]
    if event.reason is not None:
        fields.append(str(event.reason))
    return "  ".join(fields)


def duration_text(seconds: float | None) -> str:
    """A host's duration: ``340 ms``, ``1.2 s``, ``2 min 05 s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def clock_text(seconds: float | None) -> str:
    """Elapsed time and ETA: ``0:03:12`` (hours grow as needed)."""
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def rate_text(per_second: float | None) -> str:
    return "-" if per_second is None else f"{per_second:.1f} hosts/s"


def percent_text(value: float) -> str:
    return f"{value:.1f}%" if value % 1 else f"{value:.0f}%"


def gate_text(gate: GateFigures | None) -> str:
    """``failed 4.0% (max 5%): holds``. "holds" and "FAILS" are the words of the gate."""
    if gate is None:
        return "not started"
    verdict = "holds" if gate.held else "FAILS"
    return (
        f"failed {percent_text(gate.failure_percentage)} "
        f"(max {percent_text(gate.max_fail_percentage)}): {verdict}"
    )


def counts_text(wave: WaveFigures) -> str:
    """Non-zero outcomes in a fixed order, e.g. ``changed 8, skipped 1, failed 1``."""
    parts = [f"{o.value.replace('_', ' ')} {wave.counts[o]}" for o in Outcome if wave.counts.get(o)]
    if wave.in_flight:
        parts.append(f"in flight {wave.in_flight}")
    return ", ".join(parts) or "no host finished"


def run_text(wave: WaveFigures) -> str:
    """`` (3 earlier, 1 this run)`` when the wave's hosts finished over several runs."""
    if wave.ran is None or not wave.earlier:
        return ""
    return f" ({wave.earlier} earlier, {wave.ran} this run)"


def site_text(site: SiteFigures) -> str:
    """``site paris: 2 worker(s), 0 queued, 3 in flight; changed 5, failed 1``, or the site
    without a worker said first."""
    parts = [f"{o.value.replace('_', ' ')} {site.counts[o]}" for o in Outcome if site.counts.get(o)]
    done = ", ".join(parts) or "no host finished"
    if site.no_worker_since is not None:
        since = time.strftime("%H:%M:%S", time.localtime(site.no_worker_since))
        return (
            f"site {site.site}: NO WORKER since {since}; {site.queued} queued, their hosts wait "
            f"for one until their deadline (raorch worker --site {site.site}); {done}"
        )
    workers = "workers not looked at yet" if site.workers < 0 else f"{site.workers} worker(s)"
    return f"site {site.site}: {workers}, {site.queued} queued, {site.in_flight} in flight; {done}"


def _resume_lines(figures: RolloutFigures) -> list[str]:
    """How to go on after a run that ended before its end: the same command resumes it (the
    journal keeps every finished host and every snapshot)."""
    if figures.kind is RunKind.ROLLBACK:
        return [
            "  its last run was interrupted; resume it with: "
            f"raorch rollback --rollout {figures.rollout_id}"
        ]
    canceled = [w.name for w in figures.waves if w.state is WaveState.CANCELED]
    if not canceled:
        return ["  its last run was interrupted"]
    return [
        "  its last run was interrupted; resume it with: "
        f"raorch rollout --inventory {figures.inventory} --wave {canceled[0]}"
    ]


def summary_lines(figures: RolloutFigures) -> list[str]:
    head = f"{figures.kind.value} {figures.rollout_id}"
    if not figures.running and figures.finished_at is not None:
        head += " (interrupted)" if figures.interrupted else " (finished)"
    elif figures.running:
        head += " (running)"
    lines = [head, f"  playbook {figures.playbook}", f"  inventory {figures.inventory}"]
    if figures.interrupted and not figures.running:
        lines += _resume_lines(figures)
    for wave in figures.waves:
        if wave.state is WaveState.PENDING:
            lines.append(f"wave {wave.name}: pending")
            continue
        gate = "" if wave.gate is None else f"; gate {gate_text(wave.gate)}"
        lines.append(
            f"wave {wave.name}: {wave.state.value}, {wave.done}/{wave.total}{run_text(wave)}; "
            f"{counts_text(wave)}{gate}"
        )
    lines += [site_text(site) for site in figures.sites]
    lines.append(
        f"{figures.finished_hosts} hosts finished in {clock_text(figures.elapsed)} "
        f"({rate_text(figures.throughput)}; per host p50 {duration_text(figures.latency_p50)}, "
        f"p95 {duration_text(figures.latency_p95)})"
    )
    if figures.eta is not None:
        lines.append(f"ETA {clock_text(figures.eta)}")
    for count, heading, outcomes in (
        (figures.failed_hosts, "failed hosts", {Outcome.FAILED, Outcome.UNREACHABLE}),
        (figures.conflict_hosts, "conflicts (left alone)", {Outcome.CONFLICT}),
    ):
        if not count:
            continue
        lines.append(f"{heading}: {count}; the last ones:")
        for f in [f for f in figures.failures if f.outcome in outcomes][:5]:
            stage = "" if f.stage is None else f"{f.stage.value}: "
            lines.append(f"  {f.host}  {f.wave}  {f.outcome.value}  {stage}{f.reason}")
    if figures.refusals:
        lines.append("refused (nothing written):")
        shown, rest = figures.refusals[:SUMMARY_REFUSALS], figures.refusals[SUMMARY_REFUSALS:]
        lines += [f"  {g.reason}: {g.count}" for g in shown]
        if rest:  # reasons naming each host would otherwise flood the summary
            lines.append(f"  {len(rest)} other reasons: {sum(g.count for g in rest)}")
    return lines


# Control characters a line could carry from a host (a Windows message is the remote side's
# text) and that a terminal would act on: shown as ``\x1b``, never sent to it. Line feeds and
# tabs stay: multi-line Windows messages read as they always have. Carriage returns, which
# would overwrite the line on a terminal, go (as rich's print did).
_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))
    if code not in (0x09, 0x0A, 0x0D)
}
_CONTROLS[0x0D] = ""


def say(console: Console, text: str) -> None:
    """One plain line, exactly as given, but for control characters (``_CONTROLS``).

    Written straight to the console's file: rich's ``print`` renders each line through its
    whole pipeline (markup, emoji codes, wrapping, segments), a quarter of the controller's
    event-loop CPU per host with a line per host; a plain line needs none of it. Flushed, so
    a pipe or ``tail -f`` sees each host as it finishes."""
    file = console.file
    file.write(text.translate(_CONTROLS) + "\n")
    file.flush()


class PlainLines:
    """Subscriber: updates the view, then prints a line per finished host."""

    def __init__(self, console: Console, view: RolloutView) -> None:
        self.console = console
        self.view = view

    def __call__(self, event: Event) -> None:
        self.view(event)
        if isinstance(event, HostFinished):
            say(self.console, host_line(event))


def print_summary(console: Console, view: RolloutView, now: float | None = None) -> None:
    """The end-of-run summary, as plain lines (after the dashboard or the host lines)."""
    for line in summary_lines(view.figures(time.time() if now is None else now)):
        say(console, line)
