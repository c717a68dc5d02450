"""The engine with a dispatcher to per-site workers (issue 20), without a broker: hosts queue per
site, each site's "workers" take them in turn; what the engine decides is checked exactly: the
concurrency per site, the queued hosts given back when a gate is lost or Ctrl-C is pressed,
and the reason a host of a site without workers fails at its deadline. The real dispatcher
(Celery on RabbitMQ, real workers) is in tests/integration/test_workers.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from raorch.engine.dispatch import Withdrawn, WorkContext, WorkResult
from raorch.engine.journal import Journal
from raorch.engine.rollout import Rollout, RunOptions
from raorch.engine.runner import SiteLimits
from raorch.models.events import Event, HostFinished, HostStarted
from raorch.models.inventory import (
    AuthMethod,
    Batch,
    Connection,
    Credentials,
    GateAction,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
    WaveSpec,
)
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState

CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "X"))


def fleet(
    tmp_path: Path, sites: dict[str, str], pct: float = 0, batch: Batch | None = None
) -> tuple[ResolvedInventory, Path]:
    """One wave of the hosts of ``sites`` (host -> site)."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("inventory")
    pb = tmp_path / "pb.yaml"
    pb.write_text("playbook")
    spec = WaveSpec("w", tuple(sites), pct, batch, GateAction.HALT, False, None)
    targets = {h: Target(h, "127.0.0.1", CONN, CREDS, "w", s) for h, s in sites.items()}
    return ResolvedInventory(str(inv), str(pb), ("CORP",), targets, (spec,)), pb


def unused_work(ctx: WorkContext, side: object) -> WorkResult:
    raise AssertionError("the dispatcher runs the work")


class SiteWorkers:
    """A dispatcher to per-site workers, in the event loop: ``workers[site]`` hosts of a site
    run at once, the others wait in its queue; a site without workers never takes one."""

    def __init__(
        self,
        workers: dict[str, int],
        failing: frozenset[str] = frozenset(),
        release: asyncio.Event | None = None,
    ) -> None:
        self.workers = workers
        self.failing = failing
        self.release = release  # hosts end when it is set (else at once)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self.started: list[str] = []
        self.withdrawn: list[str] = []
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()  # the most hosts of a site seen running at once
        self.withdraws = 0

    async def submit(self, context: WorkContext) -> WorkResult:
        site, host = context.target.site, context.target.name
        if not self.workers.get(site):
            await asyncio.Event().wait()  # nobody ever takes it
        slots = self._slots.setdefault(site, asyncio.Semaphore(self.workers[site]))
        waiter = asyncio.ensure_future(slots.acquire())
        self._waiting[host] = waiter
        try:
            await waiter
        except asyncio.CancelledError:
            if host in self.withdrawn:
                raise Withdrawn(host) from None
            raise
        finally:
            self._waiting.pop(host, None)
        self.started.append(host)
        self.running[site] += 1
        self.most[site] = max(self.most[site], self.running[site])
        try:
            if self.release is not None:
                await self.release.wait()
            else:
                await asyncio.sleep(0.001)
        finally:
            self.running[site] -= 1
            slots.release()
        if host in self.failing:
            return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, "access denied"))
        return WorkResult(Outcome.CHANGED, changes=1)

    def withdraw(self) -> None:
        self.withdraws += 1
        for host, waiter in list(self._waiting.items()):
            self.withdrawn.append(host)
            waiter.cancel()

    def late(self, context: WorkContext) -> str | None:
        site = context.target.site
        return None if self.workers.get(site) else f"site {site} has no worker"

    def close(self) -> None:
        pass


def run(rollout: Rollout, dispatcher: SiteWorkers, **kw: object) -> tuple[object, list[Event]]:
    events: list[Event] = []
    opts = RunOptions(
        wave="w",
        subscribers=[rollout.journal.record, events.append],
        dispatcher=dispatcher,
        **kw,  # type: ignore[arg-type]
    )
    return asyncio.run(rollout.run_wave(opts)), events


def test_site_concurrency_bounds_each_site_and_a_full_site_holds_up_no_other(
    tmp_path: Path,
) -> None:
    # paris's hosts come first in the wave; with 2 of them at a time, lyon's still start.
    sites = {f"p{i}": "paris" for i in range(8)} | {f"l{i}": "lyon" for i in range(4)}
    inv, pb = fleet(tmp_path, sites)
    rollout = Rollout(Journal(tmp_path / "state.db"), inv, pb, unused_work)
    dispatcher = SiteWorkers({"paris": 8, "lyon": 8})
    result, events = run(
        rollout, dispatcher, concurrency=6, sites=SiteLimits(each=2, sites={"lyon": 3})
    )
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert dispatcher.most == Counter({"paris": 2, "lyon": 3})
    started = [e.host for e in events if isinstance(e, HostStarted)]
    # lyon's first host starts before paris's third, although it comes after every paris host
    assert started.index("l0") < started.index("p2")
    assert {e.site for e in events if isinstance(e, HostFinished)} == {"paris", "lyon"}


def test_a_gate_lost_by_a_result_gives_back_the_queued_hosts(tmp_path: Path) -> None:
    # One worker for 6 hosts, all submitted at once: the first fails, the gate (0%) is lost,
    # the queued ones are given back: never run, no outcome. The worker took the next one as
    # soon as it was done with the first, before the controller read that result: that one
    # had started, and goes on.
    sites = {f"h{i}": "paris" for i in range(6)}
    inv, pb = fleet(tmp_path, sites)
    journal = Journal(tmp_path / "state.db")
    rollout = Rollout(journal, inv, pb, unused_work)
    dispatcher = SiteWorkers({"paris": 1}, failing=frozenset({"h0"}))
    result, events = run(rollout, dispatcher, concurrency=6)
    assert result.state is WaveState.HALTED  # type: ignore[attr-defined]
    assert dispatcher.started == ["h0", "h1"]
    assert sorted(dispatcher.withdrawn) == ["h2", "h3", "h4", "h5"]
    assert [e.host for e in events if isinstance(e, HostFinished)] == ["h0", "h1"]
    outcomes = {r.host: r.outcome for r in journal.hosts(rollout.id)}
    assert outcomes == {"h0": Outcome.FAILED, "h1": Outcome.CHANGED} | {
        f"h{i}": None for i in range(2, 6)
    }
    assert result.not_started == ("h2", "h3", "h4", "h5")  # type: ignore[attr-defined]


def test_a_gate_that_still_holds_withdraws_nothing(tmp_path: Path) -> None:
    sites = {f"h{i}": "paris" for i in range(6)}
    inv, pb = fleet(tmp_path, sites, pct=50)
    rollout = Rollout(Journal(tmp_path / "state.db"), inv, pb, unused_work)
    dispatcher = SiteWorkers({"paris": 1}, failing=frozenset({"h0"}))
    result, _ = run(rollout, dispatcher, concurrency=6)
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert dispatcher.withdraws == 0 and len(dispatcher.started) == 6


def test_ctrl_c_gives_back_the_queued_hosts_and_lets_the_running_ones_finish(
    tmp_path: Path,
) -> None:
    sites = {f"h{i}": "paris" for i in range(4)}
    inv, pb = fleet(tmp_path, sites)
    rollout = Rollout(Journal(tmp_path / "state.db"), inv, pb, unused_work)

    async def main() -> object:
        release = asyncio.Event()
        dispatcher = SiteWorkers({"paris": 1}, release=release)
        opts = RunOptions(wave="w", concurrency=4, dispatcher=dispatcher)
        task = asyncio.ensure_future(rollout.run_wave(opts))
        while not dispatcher.started:
            await asyncio.sleep(0.001)
        rollout.stop.press()  # Ctrl-C
        release.set()
        result = await task
        assert dispatcher.started == ["h0"] and sorted(dispatcher.withdrawn) == ["h1", "h2", "h3"]
        return result

    result = asyncio.run(main())
    assert result.state is WaveState.CANCELED  # type: ignore[attr-defined]
    assert result.counts == {Outcome.CHANGED: 1}  # type: ignore[attr-defined]


def test_a_host_of_a_site_without_workers_fails_at_its_deadline_naming_the_site(
    tmp_path: Path,
) -> None:
    inv, pb = fleet(tmp_path, {"a": "paris", "b": "lyon"}, pct=100)
    journal = Journal(tmp_path / "state.db")
    rollout = Rollout(journal, inv, pb, unused_work)
    result, events = run(rollout, SiteWorkers({"paris": 1}), deadline=0.2)
    finished = {e.host: e for e in events if isinstance(e, HostFinished)}
    assert finished["a"].outcome is Outcome.CHANGED
    lost = finished["b"]
    assert lost.outcome is Outcome.FAILED and lost.reason is not None
    assert lost.reason.stage is Stage.DEADLINE
    assert lost.reason.message == (
        "no result within the host deadline of 0.2 s: site lyon has no worker"
    )
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
