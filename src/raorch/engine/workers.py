"""Where a host's work runs in a worker process (``raorch worker``): one task, from its context
to its result, against the journal the worker shares with the controller.

The broker (engine/broker.py) hands a worker a ``WorkContext`` as JSON; ``WorkerSide.run``
turns it into a ``WorkResult`` (JSON again), running the same per-host flow as the
controller's thread pool (``work.rollout_work`` / ``rollback_work``, ``run_host``). What the
worker takes from elsewhere than the message:

- **The playbook and the domains** from the journal (the content revision the context names,
  checked against the playbook's sha-256; for a rollback, the playbooks the journal says the
  host was applied with): a message never carries settings the journal does not hold.
- **The passwords** from the worker's own environment, files or keyring (``SecretResolver``
  without a prompt): the message carries the reference only (``env:NAME``...).
- **The snapshot.** Committed into the journal before the first write; the first one wins
  (the store's rule). A task redelivered after its worker was killed (RabbitMQ hands an
  unacknowledged task to another consumer when the connection drops) carries the context
  published before the first attempt, without a snapshot: the journal has the one the first
  attempt committed, and that ORIGINAL is the one the host is resumed with (never a snapshot
  of the half-applied state).

Before it touches a host, a task is checked against the journal, so that a task left over from
an ended run does nothing: the worker's journal must hold the rollout (else the worker and the
controller do not share one), a controller must be running it (``is_running``: the run lock),
and a rollout's wave must be running. One worker at a time per host (``host_lock``): a second
task for a host (redelivered while the first worker still lives, or published again by a
controller rerun while the first still runs) waits for the first, then finds what it left.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from raorch.engine.cancel import Cancel
from raorch.engine.contents import PlaybookBook
from raorch.engine.dispatch import (
    HostSide,
    HostWork,
    PasswordSource,
    WorkContext,
    WorkResult,
)
from raorch.engine.host import HostMode
from raorch.engine.store import WorkerJournal
from raorch.engine.work import rollback_work, rollout_work
from raorch.models.inventory import Credentials
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState
from raorch.models.playbook import Playbook

Log = Callable[[str], None]


class StaleTask(Exception):
    """A task its run no longer wants (the run ended, the wave is not running): dropped
    before any contact with the host."""


@dataclass(slots=True)
class _Side:
    """``HostSide`` in a worker: the journal the worker shares, its own passwords, a cancel
    flag set at the task's deadline."""

    context: WorkContext
    journal: WorkerJournal
    passwords: PasswordSource
    cancel: Cancel = field(default_factory=Cancel)

    def commit_snapshot(self, snapshot: str) -> None:
        ctx = self.context
        self.journal.save_snapshot(ctx.rollout_id, ctx.target.name, snapshot, ctx.playbook.revision)

    def password(self, credentials: Credentials | None) -> str:
        return self.passwords.password(credentials)


@dataclass(frozen=True, slots=True)
class _Content:
    playbook: Playbook | None
    domains: tuple[str, ...]


class WorkerSide:
    """What a worker process holds: the journal it shares, its site, its passwords. ``run``
    is called from the worker's threads, one task each."""

    def __init__(
        self,
        journal: WorkerJournal,
        site: str,
        passwords: PasswordSource,
        *,
        log: Log | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.site = site
        self.passwords = passwords
        self.log = log or (lambda line: None)
        self.clock = clock
        self._cache: dict[tuple[str, int | None], _Content] = {}
        self._cache_lock = threading.Lock()

    def run(self, text: str, *, expires_at: float | None = None, redelivered: bool = False) -> str:
        """One task: the context's JSON in, the result's JSON out; never raises (a failure is
        the host's, with its reason; a stale task is dropped, its result saying why)."""
        context = WorkContext.from_json(text)
        host = context.target.name
        try:
            result = self._run(context, expires_at, redelivered)
        except StaleTask as stale:
            result = _failed(f"dropped by the worker, nothing was done: {stale}")
        except Exception as exc:  # the host boundary: the controller gets a value
            result = WorkResult(
                Outcome.FAILED,
                Reason(
                    Stage.APPLY, f"internal error in raorch worker: {type(exc).__name__}: {exc}"
                ),
            )
        reason = "" if result.reason is None else f" ({result.reason})"
        self.log(f"{host}: {result.outcome.value}{reason}")
        return result.to_json()

    # ------------------------------------------------------------ the checks

    def _run(self, context: WorkContext, expires_at: float | None, redelivered: bool) -> WorkResult:
        target = context.target
        if target.site != self.site:
            raise StaleTask(
                f"{target.name} is of site {target.site}, and this worker serves site {self.site}"
            )
        if context.mode not in (HostMode.APPLY, HostMode.ROLLBACK):
            raise StaleTask(f"a worker runs rollouts and rollbacks, not {context.mode.value}")
        row = self.journal.rollout(context.rollout_id)
        if row is None:
            return _failed(
                f"the worker's journal ({self.journal.location}) has no rollout "
                f"{context.rollout_id}: the worker and the controller must share one journal "
                "(raorch worker --journal, as the controller's); nothing was done"
            )
        if not self.journal.is_running(context.rollout_id):
            raise StaleTask(f"no controller runs rollout {context.rollout_id} any more")
        if context.mode is HostMode.APPLY:
            waves = {w.name: w.state for w in self.journal.waves(context.rollout_id)}
            state = waves.get(target.wave)
            if state is not WaveState.RUNNING:
                shown = "not started" if state is None else state.value
                raise StaleTask(f"wave {target.wave} of rollout {context.rollout_id} is {shown}")
        work = self._work(context)
        wait = None if expires_at is None else max(0.0, expires_at - self.clock())
        self.log(
            f"{target.name}: {context.mode.value} (rollout {context.rollout_id}"
            f"{', redelivered' if redelivered else ''})"
        )
        try:
            with self.journal.host_lock(context.rollout_id, target.name, wait):
                return self._locked(context, work, expires_at)
        except TimeoutError:
            return WorkResult(
                Outcome.FAILED,
                Reason(
                    Stage.DEADLINE,
                    f"another worker still ran {target.name} at its deadline; nothing was done "
                    "by this one",
                ),
            )

    def _locked(self, context: WorkContext, work: HostWork, expires_at: float | None) -> WorkResult:
        """The host's work, holding its lock: with the journal's original snapshot when an
        earlier attempt committed one."""
        target = context.target
        kept = self.journal.snapshot(context.rollout_id, target.name)
        if kept is not None and kept != context.original_snapshot:
            # An attempt that ended without a result (its worker killed, or its controller)
            # committed this snapshot before its first write: it is the ORIGINAL state.
            self.log(
                f"{target.name}: the journal holds its snapshot from an earlier attempt that "
                "ended without a result: resuming from it"
            )
            context = replace(context, original_snapshot=kept)
        side = _Side(context, self.journal, self.passwords)
        timer: threading.Timer | None = None
        if expires_at is not None:
            # The controller's deadline for the host, here: no write starts after it, and
            # the session is aborted (the controller has failed the host by then).
            timer = threading.Timer(max(0.0, expires_at - self.clock()), side.cancel.set)
            timer.daemon = True
            timer.start()
        try:
            return work(context, side)
        finally:
            if timer is not None:
                timer.cancel()

    # ------------------------------------------------------------ the work, from the journal

    def _work(self, context: WorkContext) -> HostWork:
        if context.mode is HostMode.APPLY:
            content = self._content(context.rollout_id, context.playbook.revision, context)
            assert content.playbook is not None
            return rollout_work(content.playbook, content.domains)
        content = self._content(context.rollout_id, None, context)
        book = PlaybookBook.of(self.journal, context.rollout_id)

        def playbooks_of(host: str) -> tuple[Playbook, ...]:
            playbooks = book.playbooks(host)
            if not playbooks:
                raise LookupError(
                    f"the journal does not hold the playbook {host} was applied with (a rollout "
                    "of an older raorch): roll it back without workers"
                )
            return playbooks

        return rollback_work(None, content.domains, playbooks_of=playbooks_of)

    def _content(self, rollout_id: str, revision: int | None, context: WorkContext) -> _Content:
        """The playbook of ``revision`` (None: the latest revision's domains only) and the
        inventory's domains, from the journal; cached per revision (a revision never changes)."""
        key = (rollout_id, revision)
        with self._cache_lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        contents = self.journal.contents(rollout_id)
        if not contents:
            raise LookupError(f"the journal holds no content of rollout {rollout_id}")
        if revision is None:
            row = contents[-1]
            playbook = None
        else:
            chosen = [c for c in contents if c.revision == revision]
            if not chosen or not chosen[0].playbook_json:
                raise LookupError(
                    f"the journal holds no playbook of revision {revision} of rollout {rollout_id}"
                )
            row = chosen[0]
            if context.playbook.sha and row.playbook_sha != context.playbook.sha:
                raise LookupError(
                    f"revision {revision} of rollout {rollout_id} is of another playbook "
                    f"(sha-256 {row.playbook_sha[:12]}, the task names {context.playbook.sha[:12]})"
                )
            playbook = Playbook.model_validate_json(row.playbook_json)
        domains = tuple(json.loads(row.inventory_json)["domains"]) if row.inventory_json else ()
        content = _Content(playbook, domains)
        with self._cache_lock:
            self._cache[key] = content
        return content


def _failed(message: str) -> WorkResult:
    return WorkResult(Outcome.FAILED, Reason(Stage.APPLY, message))


__all__ = ["HostSide", "StaleTask", "WorkerSide"]
