"""The dashboard's model: figures from fixed event sequences, with fixed times (no clock)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raorch.cli.plain import summary_lines
from raorch.cli.view import (
    LAST_FAILURES,
    LatencyHistogram,
    RolloutView,
    SiteFigures,
    Throughput,
)
from raorch.engine.contents import target_to_json
from raorch.engine.journal import Journal
from raorch.models.events import (
    Event,
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    SiteChecked,
    WaveFinished,
    WaveStarted,
)
from raorch.models.inventory import AuthMethod, Connection, Scheme, Target
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState

T0 = 1_000_000.0
RID = "20250101-000000-abcdef12-1"


def started(waves: tuple[str, ...] = ("canary", "pilot")) -> RolloutStarted:
    return RolloutStarted(RID, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", waves, T0)


def finished(
    host: str,
    outcome: Outcome,
    at: float,
    reason: Reason | None = None,
    duration: float = 1.0,
    wave: str = "pilot",
) -> HostFinished:
    return HostFinished(RID, wave, host, outcome, reason, duration, at)


def feed(view: RolloutView, events: list[Event]) -> RolloutView:
    for event in events:
        view(event)
    return view


def test_counts_in_flight_and_states_per_wave() -> None:
    view = feed(
        RolloutView(),
        [
            started(),
            WaveStarted(RID, "pilot", 5, 20.0, T0),
            *(HostStarted(RID, "pilot", h, T0) for h in "abcd"),
            finished("a", Outcome.CHANGED, T0 + 1),
            finished("b", Outcome.UNCHANGED, T0 + 2),
            finished("c", Outcome.FAILED, T0 + 3, Reason(Stage.APPLY, "access denied")),
        ],
    )
    f = view.figures(T0 + 4)
    canary, pilot = f.waves
    assert (canary.name, canary.state, canary.total) == ("canary", WaveState.PENDING, 0)
    assert canary.gate is None
    assert (pilot.state, pilot.total, pilot.done, pilot.in_flight) == (
        WaveState.RUNNING,
        5,
        3,
        1,
    )
    assert pilot.counts == {Outcome.CHANGED: 1, Outcome.UNCHANGED: 1, Outcome.FAILED: 1}
    assert f.running and f.elapsed == 4.0
    assert f.failed_hosts == 1
    assert [(x.host, x.stage, x.reason) for x in f.failures] == [
        ("c", Stage.APPLY, "access denied")
    ]


def test_gate_share_is_the_engines_plus_what_finished_since() -> None:
    view = feed(
        RolloutView(),
        [
            started(),
            WaveStarted(RID, "pilot", 10, 20.0, T0),
            finished("a", Outcome.CHANGED, T0 + 1),
            finished("b", Outcome.SKIPPED, T0 + 1, Reason(Stage.PREFLIGHT, "Home edition")),
            # The engine counts 2 earlier hosts and the skipped one as failed (its rules).
            GateEvaluated(RID, "pilot", 4, 1, 25.0, 20.0, False, T0 + 1),
        ],
    )
    gate = view.figures(T0 + 2).waves[1].gate
    assert gate is not None
    assert (gate.failure_percentage, gate.max_fail_percentage, gate.held) == (25.0, 20.0, False)
    view(finished("c", Outcome.CHANGED, T0 + 3))
    view(finished("d", Outcome.CHANGED, T0 + 3))
    gate = view.figures(T0 + 4).waves[1].gate
    assert gate is not None
    # 1 failed of 4 + 2 finished since: 1/6 = 16.7% <= 20%.
    assert gate.failure_percentage == pytest.approx(100 / 6)
    assert gate.held and gate.evaluated


def test_before_any_gate_evaluation_the_share_is_this_runs() -> None:
    view = feed(
        RolloutView(),
        [
            started(),
            WaveStarted(RID, "canary", 4, 0.0, T0),
            finished("a", Outcome.CHANGED, T0 + 1, wave="canary"),
            finished("b", Outcome.FAILED, T0 + 1, Reason(Stage.CONNECT, "refused"), wave="canary"),
        ],
    )
    gate = view.figures(T0 + 2).waves[0].gate
    assert gate is not None
    assert (gate.failure_percentage, gate.held, gate.evaluated) == (50.0, False, False)


def test_refusals_grouped_by_message_largest_first() -> None:
    events: list[Event] = [started(), WaveStarted(RID, "pilot", 20, 100.0, T0)]
    for i in range(12):
        events.append(
            finished(f"home{i}", Outcome.SKIPPED, T0 + 1, Reason(Stage.PREFLIGHT, "Home edition"))
        )
    for i in range(3):
        events.append(
            finished(
                f"dns{i}",
                Outcome.SKIPPED,
                T0 + 1,
                Reason(Stage.PREFLIGHT, "helper CORP\\x does not resolve"),
            )
        )
    events.append(finished("none", Outcome.SKIPPED, T0 + 1))
    f = feed(RolloutView(), events).figures(T0 + 2)
    assert [(g.reason, g.count) for g in f.refusals] == [
        ("Home edition", 12),
        ("helper CORP\\x does not resolve", 3),
        ("(no reason given)", 1),
    ]
    assert f.failed_hosts == 0 and not f.failures  # refusals are not failures


def test_last_failures_are_bounded_and_newest_first() -> None:
    events: list[Event] = [started(), WaveStarted(RID, "pilot", 100, 100.0, T0)]
    for i in range(100):
        events.append(
            finished(f"h{i:03}", Outcome.FAILED, T0 + i, Reason(Stage.AUTH, f"logon {i}"))
        )
    f = feed(RolloutView(), events).figures(T0 + 100)
    assert f.failed_hosts == 100
    assert len(f.failures) == LAST_FAILURES
    assert f.failures[0].host == "h099" and f.failures[-1].host == f"h{100 - LAST_FAILURES:03}"


def test_throughput_eta_and_latency_from_event_times() -> None:
    events: list[Event] = [started(), WaveStarted(RID, "pilot", 100, 100.0, T0)]
    # 60 hosts over 60 seconds, one a second; durations 1..60 s.
    for i in range(60):
        events.append(finished(f"h{i}", Outcome.CHANGED, T0 + i + 0.5, duration=float(i + 1)))
    f = feed(RolloutView(), events).figures(T0 + 60)
    assert f.throughput == pytest.approx(1.0)  # 30 hosts in the last 30 s window
    assert f.eta == pytest.approx(40.0)  # 40 hosts left at 1 host/s
    assert f.latency_p50 == pytest.approx(30.0, rel=0.05)
    assert f.latency_p95 == pytest.approx(57.0, rel=0.05)


def test_a_finished_run_has_fixed_figures_and_nothing_in_flight() -> None:
    view = feed(
        RolloutView(),
        [
            started(),
            WaveStarted(RID, "pilot", 3, 0.0, T0),
            *(HostStarted(RID, "pilot", h, T0) for h in "abc"),
            finished("a", Outcome.CHANGED, T0 + 1),
            finished("b", Outcome.CHANGED, T0 + 2),
            WaveFinished(RID, "pilot", WaveState.CANCELED, {Outcome.CHANGED: 2}, T0 + 2),
            RolloutFinished(RID, T0 + 4, interrupted=True),
        ],
    )
    early, late = view.figures(T0 + 10), view.figures(T0 + 1000)
    assert early == late  # no figure of a finished run depends on the clock
    assert not early.running and early.elapsed == 4.0 and early.eta is None
    assert early.throughput == pytest.approx(0.5)
    assert early.waves[1].state is WaveState.CANCELED and early.waves[1].in_flight == 0


def test_a_new_run_of_a_wave_starts_its_figures_afresh() -> None:
    view = feed(
        RolloutView(),
        [
            started(),
            WaveStarted(RID, "pilot", 2, 50.0, T0),
            finished("a", Outcome.FAILED, T0 + 1, Reason(Stage.APPLY, "x")),
            finished("b", Outcome.CHANGED, T0 + 1),
            WaveFinished(RID, "pilot", WaveState.DONE, {}, T0 + 1),
            RolloutFinished(RID, T0 + 1),
            started(),  # `--limit @failed`: a second run of the same wave
            WaveStarted(RID, "pilot", 1, 50.0, T0 + 10),
            finished("a", Outcome.CHANGED, T0 + 11),
        ],
    )
    f = view.figures(T0 + 12)
    pilot = f.waves[1]
    assert (pilot.total, pilot.done, pilot.counts) == (1, 1, {Outcome.CHANGED: 1})
    assert f.failed_hosts == 0 and not f.failures


def test_a_wave_run_again_counts_every_host_of_it() -> None:
    # issue 19: "done, 4/0" and "0/0; no host finished" after a wave ran twice
    view = feed(
        RolloutView(),
        [
            started(),  # `--limit @failed`: one host of four again, three done earlier
            WaveStarted(RID, "pilot", 1, 0.0, T0, wave_hosts=4, earlier={Outcome.CHANGED: 3}),
            finished("a", Outcome.CHANGED, T0 + 1),
            WaveFinished(RID, "pilot", WaveState.DONE, {}, T0 + 1),
            RolloutFinished(RID, T0 + 1),
        ],
    )
    pilot = view.figures(T0 + 2).waves[1]
    assert (pilot.total, pilot.done, pilot.ran, pilot.earlier) == (4, 4, 1, 3)
    assert pilot.counts == {Outcome.CHANGED: 4}
    view(started())
    view(WaveStarted(RID, "pilot", 0, 0.0, T0 + 5, wave_hosts=4, earlier={Outcome.CHANGED: 4}))
    pilot = view.figures(T0 + 6).waves[1]
    assert (pilot.total, pilot.done, pilot.ran, pilot.earlier) == (4, 4, 0, 4)


def test_a_rollbacks_conflicts_are_not_failures() -> None:
    view = feed(
        RolloutView(),
        [
            RolloutStarted(RID, RunKind.ROLLBACK, "inv.yaml", "pb.yaml", ("pilot",), T0),
            WaveStarted(RID, "pilot", 2, 100.0, T0, RunKind.ROLLBACK),
            finished("a", Outcome.CONFLICT, T0 + 1, Reason(Stage.ROLLBACK, "changed since")),
            finished("b", Outcome.FAILED, T0 + 1, Reason(Stage.CONNECT, "refused")),
        ],
    )
    f = view.figures(T0 + 2)
    assert (f.failed_hosts, f.conflict_hosts) == (1, 1)
    assert {x.outcome for x in f.failures} == {Outcome.CONFLICT, Outcome.FAILED}


def test_to_json_has_the_figures_by_value() -> None:
    import json

    view = feed(
        RolloutView(),
        [started(), WaveStarted(RID, "pilot", 1, 0.0, T0), finished("a", Outcome.CHANGED, T0)],
    )
    data = json.loads(view.to_json(T0 + 1))
    assert data["rollout_id"] == RID and data["kind"] == "rollout"
    assert data["waves"][1]["counts"] == {"changed": 1}
    assert data["waves"][1]["state"] == "running"


def test_latency_histogram_is_order_independent_and_close() -> None:
    rng = random.Random(42)
    values = [rng.lognormvariate(0, 1) for _ in range(5000)]
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in values:
        a.add(v)
    for v in sorted(values, reverse=True):
        b.add(v)
    exact = sorted(values)
    for q in (0.5, 0.95):
        assert a.quantile(q) == b.quantile(q)
        assert a.quantile(q) == pytest.approx(exact[int(q * len(exact)) - 1], rel=0.05)
    assert LatencyHistogram().quantile(0.5) is None


def test_throughput_window_forgets_old_seconds() -> None:
    t = Throughput(window=10)
    for i in range(100):
        t.add(T0 + i)  # one a second for 100 s
    assert t.rate(T0 + 100, T0) == pytest.approx(1.0)
    assert t.rate(T0 + 200, T0) == 0.0  # nothing in the last 10 s
    assert t.total == 100


def test_a_rollback_inside_a_rollout_keeps_the_waves_rollout_figures() -> None:
    """on_gate_failure: rollback runs inside the rollout: the live view must show what the
    journal (and so `raorch status`) shows: the rollout's counts, the wave rolled_back."""
    from rich.console import Console

    from raorch.cli.dashboard import DashboardFrame
    from raorch.models.events import (
        HostFinished,
        HostStarted,
        RolloutStarted,
        RunKind,
        WaveFinished,
        WaveStarted,
    )
    from raorch.models.outcomes import Outcome, WaveState

    view = RolloutView()
    view(RolloutStarted("r", RunKind.ROLLOUT, "inv", "pb", ("pilot",), 1.0))
    view(WaveStarted("r", "pilot", 10, 0.0, 1.0))
    view(HostStarted("r", "pilot", "a", 1.0))
    view(HostFinished("r", "pilot", "a", Outcome.CHANGED, None, 1.0, 2.0, 3))
    view(WaveFinished("r", "pilot", WaveState.HALTED, {Outcome.CHANGED: 1}, 3.0))
    view(WaveStarted("r", "pilot", 1, 100.0, 3.0, RunKind.ROLLBACK))
    view(HostStarted("r", "pilot", "a", 3.0, RunKind.ROLLBACK))
    view(
        HostFinished(
            "r", "pilot", "a", Outcome.ROLLED_BACK, None, 1.0, 4.0, 3, (), RunKind.ROLLBACK
        )
    )
    view(
        WaveFinished("r", "pilot", WaveState.DONE, {Outcome.ROLLED_BACK: 1}, 4.0, RunKind.ROLLBACK)
    )
    wave = view.figures(5.0).waves[0]
    assert wave.state is WaveState.ROLLED_BACK
    assert (wave.total, wave.done) == (10, 1)
    assert wave.counts == {Outcome.CHANGED: 1}
    console = Console(record=True, width=80, height=24)
    console.print(DashboardFrame(view.figures(5.0)))
    assert "rolled_back" in console.export_text()


# ---------------------------------------------------------------- sites (a run through workers)


def site_events(rid: str) -> list[Event]:
    def done(host: str, outcome: Outcome, at: float, site: str) -> HostFinished:
        return HostFinished(rid, "canary", host, outcome, None, 1.0, at, site=site)

    return [
        RolloutStarted(rid, RunKind.ROLLOUT, "inv.yaml", "pb.yaml", ("canary",), T0),
        WaveStarted(rid, "canary", 4, 50.0, T0, wave_hosts=4),
        HostStarted(rid, "canary", "p1", T0 + 1, site="paris"),
        HostStarted(rid, "canary", "p2", T0 + 1, site="paris"),
        HostStarted(rid, "canary", "l1", T0 + 1, site="lyon"),
        HostStarted(rid, "canary", "l2", T0 + 1, site="lyon"),
        SiteChecked(rid, "paris", 2, 0, None, T0 + 2),
        SiteChecked(rid, "lyon", 0, 2, None, T0 + 2),
        done("p1", Outcome.CHANGED, T0 + 3, "paris"),
        done("p2", Outcome.FAILED, T0 + 4, "paris"),
        SiteChecked(rid, "lyon", 0, 2, T0 + 2, T0 + 40),
    ]


def test_a_run_through_workers_has_a_line_per_site() -> None:
    figures = feed(RolloutView(), site_events(RID)).figures(T0 + 41)
    assert figures.sites == (
        SiteFigures("paris", 2, 0, None, 0, {Outcome.CHANGED: 1, Outcome.FAILED: 1}),
        SiteFigures("lyon", 0, 2, T0 + 2, 2, {}),
    )
    lines = summary_lines(figures)
    assert "site paris: 2 worker(s), 0 queued, 0 in flight; changed 1, failed 1" in lines
    lyon = next(line for line in lines if line.startswith("site lyon"))
    assert lyon.startswith("site lyon: NO WORKER since ") and "2 queued" in lyon
    assert "raorch worker --site lyon" in lyon


def test_a_run_without_workers_shows_no_site() -> None:
    events = [e for e in site_events(RID) if not isinstance(e, SiteChecked)]
    assert feed(RolloutView(), events).figures(T0 + 41).sites == ()


def test_the_sites_read_the_same_from_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state.db")
    rid = journal.open_rollout("c" * 64, "inv.yaml", "pb.yaml", ("canary",)).id
    conn = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
    journal.save_targets(
        rid,
        {
            h: target_to_json(Target(h, h, conn, None, "canary", site))
            for h, site in (("p1", "paris"), ("p2", "paris"), ("l1", "lyon"), ("l2", "lyon"))
        },
    )
    live = RolloutView(rid, "inv.yaml", "pb.yaml", ("canary",))
    for event in site_events(rid):
        journal.record(event)
        live(event)
    stored = RolloutView.from_journal(journal, rid).figures(T0 + 41)
    assert stored.sites == live.figures(T0 + 41).sites
    journal.close()
