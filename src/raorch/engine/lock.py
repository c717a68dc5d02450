"""One run at a time per rollout: an advisory file lock in the state home.

Two `raorch rollout` (or a rollout and a rollback) working on the same hosts of the same
rollout would race each other's snapshots and writes. The lock is ``flock(2)``: the kernel
releases it when the process dies, so a run killed with SIGKILL never leaves a stale lock and
the same command resumes at once.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from raorch.engine.journal import private_dir
from raorch.models.errors import RefusedError


@contextmanager
def run_lock(home: Path, rollout_id: str) -> Iterator[None]:
    path = private_dir(home / "rollouts" / rollout_id) / "run.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefusedError(
                f"rollout {rollout_id} is already being run by another raorch process "
                f"(lock {path})",
                "wait for it to finish (raorch status --last --watch), or stop it",
            ) from None
        yield
    finally:
        os.close(fd)
