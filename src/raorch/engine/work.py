"""What the engine runs on each host: ``run_host`` in a mode, where the work runs.

The engine (``raorch.engine.rollout``) knows nothing of snapshots' contents: it hands each
host's work a ``WorkContext`` (the target, the original snapshot of an earlier attempt...) and
the dispatcher a ``HostSide`` (commit a snapshot, the cancel flag, the passwords); it receives a
``WorkResult``. These adapters translate between that and ``run_host``'s typed ``HostReport``.
Plan and verify (``read_hosts``) go through a dispatcher too, and keep the whole report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from raorch.engine.dispatch import (
    Dispatcher,
    HostPlatform,
    HostSide,
    HostWork,
    PasswordSource,
    PlaybookRef,
    ThreadPoolDispatcher,
    WorkContext,
    WorkResult,
    in_use,
)
from raorch.engine.host import HostMode, HostReport, run_host
from raorch.engine.runner import dispatch_all
from raorch.engine.store import VerifyRow
from raorch.models.inventory import Target
from raorch.models.outcomes import Outcome
from raorch.models.playbook import Playbook
from raorch.planning.plan import changes_to_json
from raorch.planning.restore import changes_from_snapshot
from raorch.planning.snapshot import Snapshot

ReportSink = Callable[[HostReport], None]


def platform_of(report: HostReport) -> HostPlatform | None:
    """The host's Windows for the journal (the change report's outcomes by Windows version),
    refused hosts included: their facts were read before the pre-flight refused them."""
    if report.facts is None:
        return None
    profile = "" if report.profile is None else report.profile.value
    return HostPlatform(report.facts.caption.strip(), report.facts.os_version, profile)


def rollout_work(
    playbook: Playbook,
    domains: Sequence[str],
    *,
    on_report: ReportSink | None = None,
) -> HostWork:
    """APPLY on each host: snapshot committed through the journal before the first write."""

    def work(ctx: WorkContext, side: HostSide) -> WorkResult:
        target = ctx.target
        original = (
            None if ctx.original_snapshot is None else Snapshot.from_json(ctx.original_snapshot)
        )
        report = run_host(
            target,
            side.password(target.credentials),
            playbook,
            domains,
            HostMode.APPLY,
            on_snapshot=lambda snap: side.commit_snapshot(snap.to_json()),
            original_snapshot=original,
            cancel=side.cancel,
        )
        if on_report is not None:
            on_report(report)
        changes = report.changes
        outcome = report.outcome
        if outcome is Outcome.UNCHANGED and original is not None:
            # A resumed host whose writes were all made by the attempt the controller lost:
            # compliant now, but raorch changed it (the original snapshot says so).
            changes = changes_from_snapshot(playbook, original)
            if changes:
                outcome = Outcome.CHANGED
        applied = changes_to_json(changes) if changes else None
        writes = len(changes) if outcome is Outcome.CHANGED else 0
        return WorkResult(outcome, report.reason, writes, applied, platform=platform_of(report))

    return work


def rollback_work(
    playbook: Playbook | None,
    domains: Sequence[str],
    *,
    on_report: ReportSink | None = None,
    playbooks_of: Callable[[str], Sequence[Playbook]] | None = None,
) -> HostWork:
    """ROLLBACK on each host, from the ORIGINAL snapshot the journal kept (over conflicts when
    the context says ``force``).

    What raorch wrote is derived from that snapshot and the playbook the host was applied with
    (``run_host``'s default), not read from the journal's ``applied`` record: a controller
    killed in the middle of an apply never recorded the writes it had already made, but the
    snapshot was committed first. ``playbooks_of(host)``: the playbooks the journal says the
    host was applied with, newest first (more than one when the operator went on with changed
    content and the host ran again); empty, or no ``playbooks_of``: ``playbook``. With several,
    each is undone in turn, newest first: an item the newer one restored already reads back
    as the original and is not written again.
    """

    def work(ctx: WorkContext, side: HostSide) -> WorkResult:
        target = ctx.target
        if ctx.original_snapshot is None:
            raise LookupError(f"no snapshot of {target.name} in the journal")
        playbooks = tuple(playbooks_of(target.name)) if playbooks_of is not None else ()
        if not playbooks:
            if playbook is None:
                raise LookupError(f"the journal does not say which playbook {target.name} had")
            playbooks = (playbook,)
        writes = 0
        report: HostReport | None = None
        for one in playbooks:
            report = run_host(
                target,
                side.password(target.credentials),
                one,
                domains,
                HostMode.ROLLBACK,
                original_snapshot=Snapshot.from_json(ctx.original_snapshot),
                force=ctx.force,
                cancel=side.cancel,
            )
            if on_report is not None:
                on_report(report)
            writes += report.writes
            if report.outcome is not Outcome.ROLLED_BACK:
                break
        assert report is not None
        details = tuple(str(d) for d in report.differences)
        return WorkResult(report.outcome, report.reason, writes, details=details)

    return work


def read_work(
    playbook: Playbook, domains: Sequence[str]
) -> Callable[[WorkContext, HostSide], HostReport]:
    """PLAN or VERIFY (the context's mode) on each host: one read-only session, the whole
    report back."""

    def work(ctx: WorkContext, side: HostSide) -> HostReport:
        target = ctx.target
        password = side.password(target.credentials)
        return run_host(target, password, playbook, domains, ctx.mode, cancel=side.cancel)

    return work


def read_hosts(
    targets: Sequence[Target],
    playbook: Playbook,
    playbook_sha: str,
    domains: Sequence[str],
    mode: HostMode,
    *,
    concurrency: int,
    passwords: PasswordSource,
    dispatcher: Dispatcher[HostReport] | None = None,
) -> list[HostReport]:
    """PLAN or VERIFY: one read-only session per host, ``concurrency`` at a time, through
    ``dispatcher`` (default: a thread pool of this process); reports in target order."""
    if not targets:
        return []
    contexts = [WorkContext("", mode, t, None, None, PlaybookRef(playbook_sha)) for t in targets]

    def thread_pool() -> Dispatcher[HostReport]:
        return ThreadPoolDispatcher(
            {mode: read_work(playbook, domains)},
            concurrency=min(concurrency, len(targets)),
            passwords=passwords,
        )

    with in_use(dispatcher, thread_pool) as chosen:
        return asyncio.run(dispatch_all(chosen, contexts, concurrency))


def verify_rows(reports: Sequence[HostReport], at: float) -> list[VerifyRow]:
    """``raorch verify``'s verdicts as the journal keeps them (the change report shows the
    latest one of each host)."""
    return [
        VerifyRow(
            r.host,
            r.outcome,
            None if r.reason is None else r.reason.stage,
            None if r.reason is None else r.reason.message,
            tuple(str(d) for d in r.differences),
            at,
        )
        for r in reports
    ]
