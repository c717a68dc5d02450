"""The dispatcher seam: a host's work gets plain data (a ``WorkContext`` that round-trips
through JSON) and a ``HostSide`` from the dispatcher; its result comes back as a value.

The rollout here runs through a dispatcher that lets only JSON cross (as one to workers
elsewhere would), over the real thread pool and the real SQLite journal: the controller needs
nothing else. Host work is scripted; the real sessions against the lab are in
tests/integration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path

from raorch.engine.dispatch import (
    ControllerPasswords,
    HostPlatform,
    HostSide,
    PlaybookRef,
    ThreadPoolDispatcher,
    WorkContext,
    WorkResult,
)
from raorch.engine.host import HostMode
from raorch.engine.rollout import Rollout, RunOptions
from raorch.engine.runner import dispatch_all
from raorch.engine.store import JournalStore
from raorch.models.events import Event, HostFinished
from raorch.models.inventory import (
    AuthMethod,
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
from raorch.models.secrets import SecretResolver

CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, "/etc/ca.pem", 5, 30, False)
PROMPTED = Credentials("CORP\\svc", SecretRef(SecretKind.PROMPT))
PASSWORD = "Pr0mpted-S3cret!"
BOUND = 30.0  # s: a bound so that a broken cancel fails the test instead of hanging it


def fleet(tmp_path: Path, hosts: list[str]) -> tuple[ResolvedInventory, Path]:
    (tmp_path / "inv.yaml").write_text("inventory")
    pb = tmp_path / "pb.yaml"
    pb.write_text("playbook")
    spec = WaveSpec("canary", tuple(hosts), 100, None, GateAction.HALT, False, None)
    targets = {h: Target(h, f"{h}.corp", CONN, PROMPTED, "canary") for h in hosts}
    return ResolvedInventory(str(tmp_path / "inv.yaml"), str(pb), ("CORP",), targets, (spec,)), pb


class JsonOnly:
    """A dispatcher to 'elsewhere': the context goes as JSON, the result comes back as JSON;
    where the work runs, a thread pool with the controller's passwords and the journal."""

    def __init__(self, there: ThreadPoolDispatcher[WorkResult]) -> None:
        self.there = there
        self.sent: list[str] = []

    async def submit(self, context: WorkContext) -> WorkResult:
        text = context.to_json()
        self.sent.append(text)
        result = await self.there.submit(WorkContext.from_json(text))
        return WorkResult.from_json(result.to_json())

    def withdraw(self) -> None:
        self.there.withdraw()

    def late(self, context: WorkContext) -> str | None:
        return None

    def close(self) -> None:
        self.there.close()


def test_a_work_context_round_trips_through_json() -> None:
    target = Target("ws-01", "ws-01.corp", CONN, PROMPTED, "pilot")
    context = WorkContext(
        "r-1", HostMode.ROLLBACK, target, '{"host": "ws-01"}', 12.5, PlaybookRef("ab12", 3), True
    )
    assert WorkContext.from_json(context.to_json()) == context
    reads = WorkContext("", HostMode.VERIFY, target, None, None)
    assert WorkContext.from_json(reads.to_json()) == reads
    # Every field of how a host is reached travels (a field added later must be carried too).
    shipped = json.loads(context.to_json())["target"]
    assert set(shipped) == {f.name for f in dataclasses.fields(Target)}
    assert set(shipped["connection"]) == {f.name for f in dataclasses.fields(Connection)}


def test_a_work_result_round_trips_through_json() -> None:
    result = WorkResult(
        Outcome.CONFLICT,
        Reason(Stage.ROLLBACK, "1 setting(s) were changed by someone else"),
        2,
        '[{"kind": "value"}]',
        ("fAllowUnsolicited: expected REG_DWORD 1, found REG_DWORD 0",),
        HostPlatform("Microsoft Windows 10 Enterprise", "10.0.19045", "modern"),
    )
    assert WorkResult.from_json(result.to_json()) == result
    assert WorkResult.from_json(WorkResult(Outcome.UNCHANGED).to_json()) == WorkResult(
        Outcome.UNCHANGED
    )


def test_a_prompted_password_is_asked_once_in_the_controller_and_never_shipped(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    hosts = ["ws-1", "ws-2", "ws-3"]
    inventory, pb = fleet(tmp_path, hosts)
    asked: list[str] = []

    def prompt(account: str) -> str:
        asked.append(account)
        return PASSWORD

    # Asked here, before any host is touched: once for the three hosts of one account.
    passwords = ControllerPasswords(SecretResolver(prompt=prompt), inventory.targets.values())
    assert asked == ["CORP\\svc"]
    seen: dict[str, str] = {}

    def work(ctx: WorkContext, side: HostSide) -> WorkResult:
        seen[ctx.target.name] = side.password(ctx.target.credentials)
        side.commit_snapshot(f"snapshot-of-{ctx.target.name}")
        return WorkResult(Outcome.CHANGED, changes=1, applied="[]")

    journal = journal_store
    rollout = Rollout(journal, inventory, pb, work)
    there = ThreadPoolDispatcher(
        {HostMode.APPLY: work}, concurrency=2, passwords=passwords, snapshots=journal
    )
    dispatcher = JsonOnly(there)
    options = RunOptions(wave="canary", subscribers=[journal.record], dispatcher=dispatcher)
    try:
        result = asyncio.run(rollout.run_wave(options))
    finally:
        dispatcher.close()
    assert result.state is WaveState.DONE
    assert seen == dict.fromkeys(hosts, PASSWORD)  # resolved where the work runs
    assert asked == ["CORP\\svc"]  # never asked again, never from a worker thread
    assert len(dispatcher.sent) == len(hosts)
    for text in dispatcher.sent:
        assert PASSWORD not in text
        assert WorkContext.from_json(text).target.credentials == PROMPTED  # the reference
    # What the work committed through its side is the journal's, with the revision it applies.
    assert journal.snapshot(rollout.id, "ws-2") == "snapshot-of-ws-2"
    assert {h.host: h.outcome for h in journal.hosts(rollout.id)} == dict.fromkeys(
        hosts, Outcome.CHANGED
    )
    journal.close()


def test_at_the_deadline_the_controller_cancels_the_work_where_it_runs(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    inventory, pb = fleet(tmp_path, ["slow"])
    cancelled = threading.Event()

    def hangs(ctx: WorkContext, side: HostSide) -> WorkResult:
        # A session registers its abort on the flag the same way (engine/host.py).
        side.cancel.when_set(cancelled.set)
        if not cancelled.wait(BOUND):
            return WorkResult(Outcome.CHANGED)  # the flag never came: the test fails below
        return WorkResult(Outcome.FAILED, Reason(Stage.DEADLINE, "stopped"))

    journal = journal_store
    events: list[Event] = []
    rollout = Rollout(journal, inventory, pb, hangs)
    options = RunOptions(
        wave="canary",
        deadline=0.05,
        subscribers=[journal.record, events.append],
        passwords=SecretResolver(prompt=lambda _account: PASSWORD),
    )
    asyncio.run(rollout.run_wave(options))
    [finished] = [e for e in events if isinstance(e, HostFinished)]
    assert finished.outcome is Outcome.FAILED
    assert finished.reason is not None and finished.reason.stage is Stage.DEADLINE
    assert "host deadline of 0.05 s" in finished.reason.message  # the controller's verdict
    assert cancelled.wait(BOUND)  # and the work where it runs was told
    journal.close()


def test_reads_go_through_the_dispatcher_in_order_and_bounded() -> None:
    targets = [Target(f"h{i}", f"h{i}.corp", CONN, PROMPTED, "") for i in range(5)]
    contexts = [WorkContext("", HostMode.PLAN, t, None, None) for t in targets]

    class Counting:
        def __init__(self) -> None:
            self.in_flight = 0
            self.most = 0

        async def submit(self, context: WorkContext) -> str:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            for _ in range(3):
                await asyncio.sleep(0)
            self.in_flight -= 1
            return f"{context.mode.value} {context.target.name}"

        def close(self) -> None:
            pass

    counting = Counting()
    results = asyncio.run(dispatch_all(counting, contexts, concurrency=2))
    assert results == [f"plan h{i}" for i in range(5)]
    assert counting.most == 2
