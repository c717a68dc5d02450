"""What the dashboard, the plain lines and ``raorch status`` show: a pure aggregate of a rollout.

``RolloutView`` is fed either by the engine's events (it is a subscriber) or by the journal
(``RolloutView.from_journal``); both paths go through the same few update methods, so a finished
run reads the same from either side. It never draws and never reads a clock on its own: callers
pass ``now`` to ``figures()``, which returns an immutable snapshot (``RolloutFigures``) that the
renderers and ``--json`` use.

What the figures mean (docs/dashboard.md):

- A wave's figures are of the wave's hosts, whichever run they finished in: ``total`` is the
  number of hosts in the wave (``WaveStarted.wave_hosts``, the journal's ``waves.size``), and the
  counts are the outcomes of its hosts (those finished in earlier runs come with
  ``WaveStarted.earlier``), so a wave run twice never reads "4/0" or "0/0". ``ran`` is how
  many hosts the current (or last) run took on, ``earlier`` how many had finished before it.
  A host a rollback restored is pending again, except in a wave that is ``rolled_back``, which
  keeps the outcomes it had.
- The gate line is the engine's: the last ``GateEvaluated`` (which counts the wave's hosts
  finished in earlier runs too, and skipped hosts when the wave says so) plus the hosts finished
  since, so the share moves between batches instead of jumping at each batch's end.
- Throughput, latency, failures and refusals are of the current (or last) run.

Memory stays bounded at any fleet size except for one set of host names in flight per wave
(at most the concurrency) and one counter per distinct refusal reason.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from raorch.engine.store import HostRow, JournalReader, RunRow
from raorch.models.events import (
    Event,
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Stage, WaveState

# Outcomes listed under "last failures" and under "refusals". CONFLICT is rollback's failure
# (the value was changed by someone else since the rollout) and UNREACHABLE verify's; a
# conflict is counted apart (``conflict_hosts``): the host was left alone, it did not fail.
FAILURE_OUTCOMES = frozenset({Outcome.FAILED, Outcome.CONFLICT, Outcome.UNREACHABLE})
REFUSAL_OUTCOMES = frozenset({Outcome.SKIPPED, Outcome.REFUSED})

LAST_FAILURES = 20  # kept in the model; the dashboard shows as many as fit
THROUGHPUT_WINDOW = 30  # seconds: long enough to smooth batch boundaries, short enough to react
NO_REASON = "(no reason given)"


# ---------------------------------------------------------------- bounded statistics


class LatencyHistogram:
    """Host durations in logarithmic buckets: fixed memory, order-independent, <5% error.

    Buckets grow by 5% from 1 ms; the last bucket takes everything beyond ~80 hours. A quantile
    is reported as the upper bound of its bucket ("p95 at most 4.2 s"), so that hosts that all
    take 1.0 s read as 1.0 s rather than as 996 ms. Order independence matters: the journal
    lists hosts in start order, the events arrive in finish order, and both must give the same
    p50/p95.
    """

    _FIRST = 0.001
    _GROWTH = 1.05
    _BUCKETS = 400

    def __init__(self) -> None:
        self._counts = [0] * self._BUCKETS
        self.count = 0

    def add(self, seconds: float) -> None:
        if seconds <= self._FIRST:
            index = 0
        else:
            index = math.ceil(math.log(seconds / self._FIRST, self._GROWTH))
        self._counts[min(index, self._BUCKETS - 1)] += 1
        self.count += 1

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))  # nearest-rank definition
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return self._FIRST * self._GROWTH**index
        raise AssertionError("unreachable: rank <= count")


class Throughput:
    """Hosts finished per second over a sliding window, in one-second buckets (bounded)."""

    def __init__(self, window: int = THROUGHPUT_WINDOW) -> None:
        self.window = window
        self._seconds: deque[list[int]] = deque()  # [second, finished in it], ascending
        self.total = 0
        self.first: float | None = None
        self.last: float | None = None

    def add(self, at: float) -> None:
        second = int(at)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        elif not self._seconds or self._seconds[-1][0] < second:
            self._seconds.append([second, 1])
            while self._seconds[0][0] <= second - self.window:
                self._seconds.popleft()
        else:  # a late event (clock step): count it where it belongs, if still in the window
            keys = [s for s, _ in self._seconds]
            i = bisect.bisect_left(keys, second)
            if i < len(keys) and keys[i] == second:
                self._seconds[i][1] += 1
        self.total += 1
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)

    def rate(self, now: float, since: float) -> float | None:
        """Over the last ``window`` seconds, or since ``since`` (the run's start) if later."""
        start = max(now - self.window, since)
        span = now - start
        if span <= 0:
            return None
        recent = sum(n for s, n in self._seconds if s >= int(start))
        return recent / span


# ---------------------------------------------------------------- the figures (a snapshot)


@dataclass(frozen=True, slots=True)
class GateFigures:
    max_fail_percentage: float
    failure_percentage: float
    held: bool
    evaluated: bool  # the engine has judged it at least once (a batch ended)


@dataclass(frozen=True, slots=True)
class WaveFigures:
    name: str
    state: WaveState
    total: int
    done: int
    in_flight: int
    counts: dict[Outcome, int]
    gate: GateFigures | None
    ran: int | None = None  # hosts the current (or last) run took on; None: not in that run
    earlier: int = 0  # hosts of the wave that had finished before that run

    def count(self, outcome: Outcome) -> int:
        return self.counts.get(outcome, 0)


@dataclass(frozen=True, slots=True)
class FailureLine:
    host: str
    wave: str
    outcome: Outcome
    stage: Stage | None
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class RolloutFigures:
    rollout_id: str
    kind: RunKind
    inventory: str
    playbook: str
    running: bool
    started_at: float | None  # of the current (or last) run
    finished_at: float | None
    elapsed: float | None
    waves: tuple[WaveFigures, ...]
    finished_hosts: int  # in this run
    failed_hosts: int  # in this run, outcomes of FAILURE_OUTCOMES but conflicts
    throughput: float | None  # hosts per second
    latency_p50: float | None  # seconds per host
    latency_p95: float | None
    eta: float | None  # seconds until the running wave's hosts are all done
    failures: tuple[FailureLine, ...]  # newest first
    refusals: tuple[RefusalGroup, ...]  # largest first
    conflict_hosts: int = 0  # in this run (rollback): changed by someone else, left alone
    # The last run ended before its end: Ctrl-C, or its controller died (SIGKILL, a crash),
    # recorded so by the next command that opened the journal (engine/lock.py).
    interrupted: bool = False

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(asdict(self), indent=indent)


# ---------------------------------------------------------------- the aggregate


@dataclass(slots=True)
class _Wave:
    name: str
    state: WaveState = WaveState.PENDING
    total: int = 0
    max_fail_percentage: float = 0.0
    counts: Counter[Outcome] = field(default_factory=Counter)
    in_flight: set[str] = field(default_factory=set)
    # The last gate the engine evaluated, and this run's figures at that moment, so that the
    # live share is the engine's plus what finished since.
    gate_finished: int = 0
    gate_failed: int = 0
    gate_at_done: int = 0
    gate_at_failed: int = 0
    gate_evaluated: bool = False
    # From the journal: the last verdict, when no running figures are better.
    stored_percentage: float | None = None
    stored_held: bool | None = None
    # A rollback has no gate: nobody halts the undoing of a change.
    gated: bool = True
    ran: int | None = None
    earlier: int = 0

    def reset_run(
        self,
        total: int,
        max_fail_percentage: float,
        gated: bool = True,
        wave_hosts: int | None = None,
        earlier: dict[Outcome, int] | None = None,
    ) -> None:
        """A run of the wave starts: it takes on ``total`` hosts; the wave has ``wave_hosts``
        (None: a rollback's or an older event: ``total``), of which ``earlier`` finished
        before and are not taken on again."""
        self.gated = gated
        self.state = WaveState.RUNNING
        self.total = total if wave_hosts is None else wave_hosts
        self.ran = total
        self.max_fail_percentage = max_fail_percentage
        self.counts.clear()
        self.counts.update(earlier or {})
        self.earlier = sum((earlier or {}).values())
        self.in_flight.clear()
        self.gate_finished = self.gate_failed = self.gate_at_done = self.gate_at_failed = 0
        self.gate_evaluated = False
        self.stored_percentage = self.stored_held = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def gate(self) -> GateFigures | None:
        if self.state is WaveState.PENDING or not self.gated:
            return None
        if self.stored_percentage is not None and self.stored_held is not None:
            return GateFigures(
                self.max_fail_percentage, self.stored_percentage, self.stored_held, True
            )
        done = self.done
        failed = self.counts[Outcome.FAILED]
        finished = self.gate_finished + done - self.gate_at_done
        failing = self.gate_failed + failed - self.gate_at_failed
        share = 0.0 if finished == 0 else 100.0 * failing / finished
        # Same rule as raorch.planning.waves.evaluate: the gate holds up to the threshold.
        return GateFigures(
            self.max_fail_percentage, share, share <= self.max_fail_percentage, self.gate_evaluated
        )

    def figures(self) -> WaveFigures:
        return WaveFigures(
            self.name,
            self.state,
            self.total,
            self.done,
            len(self.in_flight),
            {o: n for o, n in sorted(self.counts.items()) if n},
            self.gate(),
            self.ran,
            self.earlier,
        )


class RolloutView:
    """The aggregate of one rollout. Call it with each engine event (on the event-loop thread),
    or build it with ``from_journal``; read it with ``figures(now)``."""

    def __init__(
        self,
        rollout_id: str = "",
        inventory: str = "",
        playbook: str = "",
        waves: Iterable[str] = (),
    ) -> None:
        self.rollout_id = rollout_id
        self.inventory = inventory
        self.playbook = playbook
        self.kind = RunKind.ROLLOUT
        self._waves: dict[str, _Wave] = {name: _Wave(name) for name in waves}
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.running = False
        self.interrupted = False
        self._new_run()

    def _new_run(self) -> None:
        self.latency = LatencyHistogram()
        self.throughput = Throughput()
        self.failures: deque[FailureLine] = deque(maxlen=LAST_FAILURES)
        self.failed_hosts = 0
        self.conflict_hosts = 0
        self.refusals: Counter[str] = Counter()
        for wave in getattr(self, "_waves", {}).values():
            wave.ran = None  # no wave has run in a run that just began
            wave.earlier = 0

    def wave(self, name: str) -> _Wave:
        """The wave of that name; one the view has not heard of yet is added at the end."""
        found = self._waves.get(name)
        if found is None:
            found = self._waves[name] = _Wave(name)
        return found

    # ------------------------------------------------------------ the subscriber

    def __call__(self, event: Event) -> None:
        if (
            not isinstance(event, RolloutStarted)
            and getattr(event, "kind", self.kind) is RunKind.ROLLBACK
            and self.kind is RunKind.ROLLOUT
        ):
            # The rollback a failed gate runs inside a rollout (on_gate_failure: rollback):
            # the wave keeps the rollout's figures and, as in the journal, becomes rolled_back.
            if isinstance(event, WaveFinished) and event.counts.get(Outcome.ROLLED_BACK):
                self.wave(event.wave).state = WaveState.ROLLED_BACK
            return
        match event:
            case RolloutStarted():
                self.rollout_id = event.rollout_id
                self.kind = event.kind
                self.inventory = event.inventory
                self.playbook = event.playbook
                for name in event.waves:
                    self.wave(name)
                self.started_at = event.at
                self.finished_at = None
                self.running = True
                self._new_run()
            case WaveStarted():
                self.wave(event.wave).reset_run(
                    event.total_hosts,
                    event.max_fail_percentage,
                    gated=event.kind is not RunKind.ROLLBACK,
                    wave_hosts=event.wave_hosts,
                    earlier=event.earlier,
                )
            case HostStarted():
                self.wave(event.wave).in_flight.add(event.host)
            case HostFinished():
                reason = event.reason
                self._host_finished(
                    event.wave,
                    event.host,
                    event.outcome,
                    None if reason is None else reason.stage,
                    None if reason is None else reason.message,
                    event.duration,
                    event.at,
                )
            case GateEvaluated():
                wave = self.wave(event.wave)
                wave.gate_finished = event.finished
                wave.gate_failed = event.failed
                wave.gate_at_done = wave.done
                wave.gate_at_failed = wave.counts[Outcome.FAILED]
                wave.max_fail_percentage = event.max_fail_percentage
                wave.gate_evaluated = True
            case WaveFinished():
                wave = self.wave(event.wave)
                wave.state = event.state
                wave.in_flight.clear()
            case RolloutFinished():
                self.finished_at = event.at
                self.running = False
                self.interrupted = event.interrupted
                for wave in self._waves.values():
                    wave.in_flight.clear()

    def _host_finished(
        self,
        wave_name: str,
        host: str,
        outcome: Outcome,
        stage: Stage | None,
        message: str | None,
        duration: float | None,
        at: float,
    ) -> None:
        wave = self.wave(wave_name)
        wave.in_flight.discard(host)
        wave.counts[outcome] += 1
        self._run_stats(wave_name, host, outcome, stage, message, duration, at)

    def _run_stats(
        self,
        wave_name: str,
        host: str,
        outcome: Outcome,
        stage: Stage | None,
        message: str | None,
        duration: float | None,
        at: float,
    ) -> None:
        """The run-level figures of one finished host (the wave's counts are kept apart)."""
        if duration is not None:
            self.latency.add(duration)
        self.throughput.add(at)
        if outcome in FAILURE_OUTCOMES:
            if outcome is Outcome.CONFLICT:
                self.conflict_hosts += 1
            else:
                self.failed_hosts += 1
            self.failures.append(FailureLine(host, wave_name, outcome, stage, message or "", at))
        elif outcome in REFUSAL_OUTCOMES:
            self.refusals[message or NO_REASON] += 1

    # ------------------------------------------------------------ from the journal

    @classmethod
    def from_journal(cls, journal: JournalReader, rollout_id: str) -> RolloutView:
        """The same figures, read from the journal (``raorch status``, or to seed a live view
        with the waves that ran before)."""
        row = journal.rollout(rollout_id)
        if row is None:
            raise KeyError(rollout_id)
        view = cls(row.id, row.inventory, row.playbook, row.waves)
        runs = journal.runs(rollout_id)
        last_run: RunRow | None = runs[-1] if runs else None
        if last_run is not None:
            view.kind = last_run.kind
            view.started_at = last_run.started_at
            view.finished_at = last_run.finished_at
            view.interrupted = last_run.interrupted
        hosts = journal.hosts(rollout_id)
        by_wave: dict[str, list[HostRow]] = {}
        for host in hosts:
            by_wave.setdefault(host.wave, []).append(host)
        restored = journal.rolled_back(rollout_id)
        run_start = last_run.started_at if last_run is not None else math.inf
        for w in journal.waves(rollout_id):
            wave = view.wave(w.name)
            wave.state = w.state
            members = by_wave.get(w.name, [])
            # The wave's size; a journal of an older raorch kept the latest run's only.
            wave.total = w.size if w.size is not None else max(w.total, len(members))
            wave.max_fail_percentage = w.max_fail_percentage
            if w.state is not WaveState.RUNNING:
                # A wave at rest: its last verdict is the engine's final word.
                wave.stored_percentage = w.failure_percentage
                wave.stored_held = w.gate_held
            in_last_run = w.state is WaveState.RUNNING or (
                w.finished_at is not None and w.finished_at >= run_start
            )
            this_run = 0
            for host in members:
                if host.host in restored and w.state is not WaveState.ROLLED_BACK:
                    continue  # restored: pending again
                running = w.state is WaveState.RUNNING and (
                    host.outcome is None or (host.finished_at or 0.0) < (host.started_at or 0.0)
                )
                if running:
                    wave.in_flight.add(host.host)
                elif host.outcome is not None:
                    wave.counts[host.outcome] += 1
                    if (host.started_at or 0.0) >= run_start:
                        this_run += 1
            if in_last_run and last_run is not None and last_run.kind is RunKind.ROLLOUT:
                wave.ran = w.total
                wave.earlier = max(0, wave.done - this_run)
        view.running = any(w.state is WaveState.RUNNING for w in view._waves.values()) or (
            last_run is not None and last_run.finished_at is None
        )
        # Run-level figures: hosts finished in the last run, in the order they finished.
        since = last_run.started_at if last_run is not None else -math.inf
        recent = [h for h in hosts if h.outcome is not None and (h.finished_at or 0.0) >= since]
        recent.sort(key=lambda h: h.finished_at or 0.0)
        for h in recent:
            assert h.outcome is not None
            view._run_stats(
                h.wave, h.host, h.outcome, h.stage, h.reason, h.duration, h.finished_at or 0.0
            )
        return view

    # ------------------------------------------------------------ reading

    def figures(self, now: float) -> RolloutFigures:
        waves = tuple(w.figures() for w in self._waves.values())
        started = self.started_at
        end = now if self.running or self.finished_at is None else self.finished_at
        elapsed = None if started is None else max(0.0, end - started)
        if started is None:
            rate = None
        elif self.running:
            rate = self.throughput.rate(now, started)
        else:  # a finished run: its overall rate, which no longer depends on ``now``
            rate = None if not elapsed else self.throughput.total / elapsed
        remaining = sum(max(0, w.total - w.done) for w in waves if w.state is WaveState.RUNNING)
        eta: float | None = None
        if self.running and remaining == 0:
            eta = 0.0 if any(w.state is WaveState.RUNNING for w in waves) else None
        elif self.running and rate:
            eta = remaining / rate
        return RolloutFigures(
            rollout_id=self.rollout_id,
            kind=self.kind,
            inventory=self.inventory,
            playbook=self.playbook,
            running=self.running,
            started_at=started,
            finished_at=self.finished_at,
            elapsed=elapsed,
            waves=waves,
            finished_hosts=self.throughput.total,
            failed_hosts=self.failed_hosts,
            throughput=rate,
            latency_p50=self.latency.quantile(0.50),
            latency_p95=self.latency.quantile(0.95),
            eta=eta,
            failures=tuple(reversed(self.failures)),
            refusals=tuple(
                RefusalGroup(reason, n)
                for reason, n in sorted(self.refusals.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            conflict_hosts=self.conflict_hosts,
            interrupted=self.interrupted,
        )

    def to_json(self, now: float) -> str:
        return self.figures(now).to_json()
