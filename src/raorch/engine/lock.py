"""One run at a time per rollout: an advisory file lock in the state home (the SQLite
journal's ``lock(rollout_id)``, ``engine/journal.py``).

Two `raorch rollout` (or a rollout and a rollback) working on the same hosts of the same
rollout would race each other's snapshots and writes. The lock is ``flock(2)``: the kernel
releases it when the process dies, so a run killed with SIGKILL never leaves a stale lock and
the same command resumes at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
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


def _host_lock_path(home: Path, rollout_id: str, host: str) -> Path:
    # A digest: a host's name is the inventory's key, not necessarily a safe file name.
    digest = hashlib.sha256(host.encode("utf-8")).hexdigest()[:32]
    return home / "rollouts" / rollout_id / "hosts" / f"{digest}.lock"


@contextmanager
def host_lock(home: Path, rollout_id: str, host: str, wait: float | None) -> Iterator[None]:
    """One worker at a time on a host of a rollout (``raorch worker``): held while the host's
    work runs. A second task for the same host (a redelivery while the first worker still
    lives, a controller's rerun while its earlier tasks still run) waits for it, then finds
    the host as the first left it. ``flock`` on a file per host: the kernel drops it with its
    process (a SIGKILLed worker's host is free at once for the redelivered task), and two
    threads of one process each open the file, so they exclude each other too. Raises
    ``TimeoutError`` when another holder kept it ``wait`` seconds (None: wait for ever)."""
    private_dir(home / "rollouts" / rollout_id / "hosts")
    path = _host_lock_path(home, rollout_id, host)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        end = None if wait is None else time.monotonic() + wait
        pause = 0.02
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"host {host} is held by another worker") from None
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 2, 0.5)
        yield
    finally:
        os.close(fd)
