"""The seam between the controller and where a host's work runs: the dispatcher.

The controller (``engine/runner.py``: waves, batches, the gate, each host's deadline, cancel and
events) hands each host's work to a ``Dispatcher`` as a ``WorkContext``: plain data that
round-trips through JSON (``to_json`` / ``from_json``), no callable, no lock, no event. The
result comes back as a value (``WorkResult``, which round-trips too). Where the work runs, the
dispatcher gives it a ``HostSide``: what reaches back into the controller's world (commit the
snapshot to the journal before the first write; the cancel flag, set when the controller gives
up on the host) and the passwords, resolved there from the target's references.

``ThreadPoolDispatcher`` is the first implementation: the work runs in a thread of this process
(pypsrp is synchronous). A dispatcher to workers elsewhere implements the same two methods,
``submit`` and ``close``, and its own ``HostSide``; the controller does not change. The
controller gives up on a host by cancelling ``submit`` (asyncio); the dispatcher turns that
into the host's cancel flag where the work runs.

Secrets travel as references. A context holds the target's credential reference (``env:NAME``,
``file:PATH``, ``keyring:SERVICE``, ``prompt``), never a password. ``prompt`` is asked in the
controller, once per account, before any host is touched (``ControllerPasswords``), and the
answer stays in the controller's memory: it is never put in a context, so a worker elsewhere
has no way to get it (nor a terminal to ask at).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from raorch.engine.cancel import Cancel
from raorch.engine.contents import target_from_json, target_to_json
from raorch.engine.host import HostMode
from raorch.models.inventory import Credentials, SecretRef, Target
from raorch.models.outcomes import Outcome, Reason, Stage
from raorch.models.secrets import SecretError

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class PlaybookRef:
    """Which playbook a host's work applies, by reference: the sha-256 of the playbook file and,
    in a rollout, the journal's content revision that holds it checked (the snapshot is
    committed with it). A rollback's host applies the playbooks the journal says it was applied
    with (its own revisions): it names none."""

    sha: str = ""
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class WorkContext:
    """What a host's work is given: plain data, the same in a thread or on another machine."""

    rollout_id: str  # "" for plan and verify, which belong to no rollout
    mode: HostMode  # which work: APPLY (rollout), ROLLBACK, PLAN, VERIFY
    target: Target  # how to reach the host; its credentials as a reference, never a password
    original_snapshot: str | None  # JSON: kept from an earlier, interrupted attempt
    deadline: float | None  # seconds the host has (the controller enforces it); None: no limit
    playbook: PlaybookRef = field(default_factory=PlaybookRef)
    force: bool = False  # ROLLBACK: restore over settings someone else changed since

    def to_json(self) -> str:
        return json.dumps(
            {
                "rollout_id": self.rollout_id,
                "mode": self.mode.value,
                # The target as the journal keeps it: the credential's reference only.
                "target": json.loads(target_to_json(self.target)),
                "original_snapshot": self.original_snapshot,
                "deadline": self.deadline,
                "playbook": {"sha": self.playbook.sha, "revision": self.playbook.revision},
                "force": self.force,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> WorkContext:
        data = json.loads(text)
        playbook = data["playbook"]
        return cls(
            str(data["rollout_id"]),
            HostMode(data["mode"]),
            target_from_json(json.dumps(data["target"])),
            data["original_snapshot"],
            None if data["deadline"] is None else float(data["deadline"]),
            PlaybookRef(str(playbook["sha"]), playbook["revision"]),
            bool(data["force"]),
        )


@dataclass(frozen=True, slots=True)
class HostPlatform:
    """The Windows a host reported (its facts) and the profile raorch gave it."""

    caption: str
    os_version: str
    profile: str  # "legacy", "modern", or "" when raorch did not understand the host


@dataclass(frozen=True, slots=True)
class WorkResult:
    """What a host's work (rollout, rollback) gives back: a value, whatever went wrong."""

    outcome: Outcome
    reason: Reason | None = None
    changes: int = 0
    applied: str | None = None  # the changes made, JSON, kept for rollback and `show`
    details: tuple[str, ...] = ()  # e.g. a conflict's differences, expected vs found
    platform: HostPlatform | None = None  # None when the host's facts were never read

    def to_json(self) -> str:
        platform = self.platform
        reason = self.reason
        return json.dumps(
            {
                "outcome": self.outcome.value,
                "reason": None
                if reason is None
                else {"stage": reason.stage.value, "message": reason.message},
                "changes": self.changes,
                "applied": self.applied,
                "details": list(self.details),
                "platform": None
                if platform is None
                else {
                    "caption": platform.caption,
                    "os_version": platform.os_version,
                    "profile": platform.profile,
                },
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> WorkResult:
        data: dict[str, Any] = json.loads(text)
        reason = data["reason"]
        platform = data["platform"]
        return cls(
            Outcome(data["outcome"]),
            None if reason is None else Reason(Stage(reason["stage"]), str(reason["message"])),
            int(data["changes"]),
            data["applied"],
            tuple(str(d) for d in data["details"]),
            None
            if platform is None
            else HostPlatform(
                str(platform["caption"]), str(platform["os_version"]), str(platform["profile"])
            ),
        )


class HostSide(Protocol):
    """What the dispatcher supplies where a host's work runs, beside its context."""

    @property
    def cancel(self) -> Cancel:
        """Set when the controller gave up on the host (its deadline, an abort): no write
        starts after it, and the session registered on it is aborted."""
        ...

    def commit_snapshot(self, snapshot: str) -> None:
        """Commit the host's snapshot (JSON) to the journal, before the first write; raises if
        it could not be kept (the host then writes nothing)."""
        ...

    def password(self, credentials: Credentials | None) -> str:
        """The password of the target's credentials, resolved here from its reference."""
        ...


HostWork = Callable[[WorkContext, HostSide], WorkResult]


class Withdrawn(Exception):
    """Raised by ``submit`` for a host whose work the dispatcher gave back before it started
    (``Dispatcher.withdraw``): the host did not run, and has no outcome."""


class Dispatcher(Protocol[R_co]):
    """Runs a host's work somewhere and gives its result back as a value.

    ``submit`` returns when the work ended; the controller cancels it when it gives up on the
    host (deadline, abort), and the dispatcher then sets the host's cancel flag where the work
    runs. An exception out of ``submit`` is the host's failure (the controller makes it one),
    except ``Withdrawn``.
    """

    async def submit(self, context: WorkContext) -> R_co: ...

    def withdraw(self) -> None:
        """The controller starts no more hosts (a gate failed, Ctrl-C): work submitted but not
        started yet where it runs (queued for a worker) is given back, its ``submit`` raising
        ``Withdrawn``; work already started goes on. Work that starts when submitted (a
        thread pool) has none to give back."""
        ...

    def late(self, context: WorkContext) -> str | None:
        """Why this host had no result by its deadline, when the dispatcher knows better than
        "it took too long" (no worker of its site took it); None otherwise."""
        ...

    def close(self) -> None:
        """No more work: let go of the threads or connections; never waits for hung hosts."""
        ...


class PasswordSource(Protocol):
    """Where the work's passwords come from (``SecretResolver`` is one)."""

    def password(self, credentials: Credentials | None) -> str: ...


class SnapshotStore(Protocol):
    """The journal's one write a host's work makes itself (``Journal`` is one)."""

    def save_snapshot(
        self, rollout_id: str, host: str, data: str, revision: int | None = None
    ) -> None: ...


class ControllerPasswords:
    """Passwords for work that runs in this process, resolved in the controller.

    Every reference of ``targets`` is resolved here and now, once per account, before any host
    is touched: ``prompt`` asks the operator here (never from a worker thread, never while the
    live view draws), and an unset variable or a loose password file is refused before the run.
    The answers stay in this object, in the controller's memory; a ``WorkContext`` carries the
    reference only. Where the work runs, ``password`` looks the answer up: a reference that was
    not resolved here is refused, never asked for.
    """

    def __init__(self, resolver: PasswordSource, targets: Iterable[Target]) -> None:
        self._passwords: dict[tuple[str, SecretRef | None], str] = {}
        for target in targets:
            creds = target.credentials
            if creds is not None and _key(creds) not in self._passwords:
                self._passwords[_key(creds)] = resolver.password(creds)

    def password(self, credentials: Credentials | None) -> str:
        if credentials is None or credentials.password is None:
            return ""  # auth: certificate; Kerberos from the operator's ticket cache
        try:
            return self._passwords[_key(credentials)]
        except KeyError:
            raise SecretError(
                f"the password of {credentials.username} ({credentials.password}) was not "
                "resolved before the run",
                "this is a raorch bug: every host's password is resolved before any host is "
                "touched; please report it",
            ) from None


def _key(credentials: Credentials) -> tuple[str, SecretRef | None]:
    return credentials.username.casefold(), credentials.password


@dataclass(slots=True)
class _ThreadSide:
    """``HostSide`` for a worker thread of this process."""

    context: WorkContext
    cancel: Cancel
    passwords: PasswordSource
    snapshots: SnapshotStore | None

    def commit_snapshot(self, snapshot: str) -> None:
        if self.snapshots is None:
            raise LookupError("no journal to commit the snapshot to")
        ctx = self.context
        self.snapshots.save_snapshot(
            ctx.rollout_id, ctx.target.name, snapshot, ctx.playbook.revision
        )

    def password(self, credentials: Credentials | None) -> str:
        return self.passwords.password(credentials)


class ThreadPoolDispatcher(Generic[R]):
    """Each host's work in a thread of this process, the work chosen by the context's mode.

    pypsrp is synchronous: each session runs in a thread of an executor sized to the concurrency
    (the default executor has only a handful of threads on 2 cores). Worker threads touch only
    their own session and, to commit a snapshot, the journal (behind its lock).
    """

    def __init__(
        self,
        works: Mapping[HostMode, Callable[[WorkContext, HostSide], R]],
        *,
        concurrency: int,
        passwords: PasswordSource,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self._works = dict(works)
        self._passwords = passwords
        self._snapshots = snapshots
        # Headroom over the concurrency for threads still unwinding after the controller gave
        # up on their host: pypsrp cannot be interrupted; the session's abort ends them.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, concurrency) * 2, thread_name_prefix="raorch-host"
        )

    async def submit(self, context: WorkContext) -> R:
        work = self._works.get(context.mode)
        if work is None:
            raise LookupError(f"this dispatcher runs no {context.mode.value} work")
        side = _ThreadSide(context, Cancel(), self._passwords, self._snapshots)
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, context, side)
        try:
            return await future
        except asyncio.CancelledError:
            # The controller gave up on the host (its deadline passed, or the run was
            # aborted): no write starts after this (run_host checks the flag), and the host's
            # session is aborted (its sockets shut down), so its thread ends now, not at
            # pypsrp's read timeouts.
            side.cancel.set()
            raise

    def withdraw(self) -> None:
        """Nothing to give back: a host's work starts in its thread when it is submitted."""

    def late(self, context: WorkContext) -> str | None:
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@contextmanager
def in_use(
    given: Dispatcher[R] | None, make: Callable[[], Dispatcher[R]]
) -> Iterator[Dispatcher[R]]:
    """``given`` (its owner closes it), else one made by ``make`` and closed after use."""
    if given is not None:
        yield given
        return
    made = make()
    try:
        yield made
    finally:
        made.close()
