"""Run a Python module under cProfile in every thread, timed by each thread's own CPU clock.

    python bench/cpu_profile.py OUT_PREFIX -m raorch rollout ...

Writes ``OUT_PREFIX.<thread name>.prof`` per thread (``pstats`` files). cProfile's default clock
is wall time, and it profiles only the thread that enabled it; the controller's time is split
between its event loop and the broker's thread, and most of its wall time is waiting, so
neither default tells where its CPU goes. ``time.thread_time`` counts only the running thread's
CPU: a call's figures are the CPU it used, not the time it waited.

For finding where time goes, not for the benchmark's tables: cProfile's own overhead inflates
every figure of such a run.
"""

from __future__ import annotations

import cProfile
import re
import runpy
import sys
import threading
import time
from pathlib import Path

_profiles: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()


def _thread_start(*_: object) -> None:
    """Called by ``threading.setprofile`` on a new thread's first event: profile it from here
    (``enable`` replaces this hook for the thread)."""
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append((threading.current_thread().name, profile))
    profile.enable()


def _dump(prefix: str) -> None:
    for name, profile in list(_profiles):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        profile.dump_stats(f"{prefix}.{safe}.prof")


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: python bench/cpu_profile.py OUT_PREFIX -m MODULE [ARGS...]")
    prefix, module = sys.argv[1], sys.argv[3]
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    sys.argv = [module, *sys.argv[4:]]
    threading.setprofile(_thread_start)
    _thread_start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        _dump(prefix)


if __name__ == "__main__":
    main()
