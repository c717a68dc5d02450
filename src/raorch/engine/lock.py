"""One run at a time per rollout: an advisory file lock in the state home (the SQLite
journal's ``lock(rollout_id)``, ``engine/journal.py``).

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

from raorch.engine.paths import private_dir
from raorch.models.errors import RefusedError


def _lock_path(home: Path, rollout_id: str) -> Path:
    return home / "rollouts" / rollout_id / "run.lock"


def is_running(home: Path, rollout_id: str) -> bool:
    """Whether a live process holds the rollout's run lock (a shared lock is refused only
    while an exclusive one is held; the kernel dropped it if its process died)."""
    path = _lock_path(home, rollout_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the shared lock, if it was taken
    return False


@contextmanager
def run_lock(home: Path, rollout_id: str) -> Iterator[None]:
    private_dir(home / "rollouts" / rollout_id)
    path = _lock_path(home, rollout_id)
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
