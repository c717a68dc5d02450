"""What makes written settings take effect now, without a restart (docs/windows.md, section 11).

Vista and later: RAServer applies the Offer RA policy (the local group "Offer Remote Assistance
Helpers") when its scheduled task runs, which Windows does when Group Policy applies new
settings, never after a direct registry write: so after writing or restoring anything under the
Terminal Services policy key, raorch runs the task in the same pipeline, last. XP / 2003 need
nothing: helpsvc reads the policy at every offer (section 12).
"""

from __future__ import annotations

from collections.abc import Iterable

from raorch.models.remote import Operation, RunScheduledTask
from raorch.planning.plan import Change
from raorch.planning.profile import HostProfile
from raorch.planning.windows import (
    REMOTE_ASSISTANCE_TASK,
    REMOTE_ASSISTANCE_TASK_WAIT_SECONDS,
    TS_POLICY_KEY,
)


def touches_offer_policy(changes: Iterable[Change]) -> bool:
    """Whether ``changes`` write or delete a value of the Offer RA policy (the Terminal Services
    policy key or its RAUnsolicit list)."""
    folded = TS_POLICY_KEY.casefold()
    keys = (c.written_key.casefold() for c in changes if c.written_key is not None)
    return any(key == folded or key.startswith(folded + "\\") for key in keys)


def activation(profile: HostProfile | None, changes: Iterable[Change]) -> tuple[Operation, ...]:
    """The operations that follow ``changes`` (and their verify reads) in the same pipeline, so
    that Windows applies them now: the Remote Assistance task on a modern host whose Offer RA
    policy changed; nothing otherwise."""
    if profile is HostProfile.MODERN and touches_offer_policy(changes):
        return (RunScheduledTask(REMOTE_ASSISTANCE_TASK, REMOTE_ASSISTANCE_TASK_WAIT_SECONDS),)
    return ()
