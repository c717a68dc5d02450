"""``bench/cpu_profile.py`` (what ``bench/rollout.py --profile-controller`` runs the controller
under): a file per thread, each timed by that thread's own CPU, so a thread that spins shows
its CPU and one that sleeps does not."""

from __future__ import annotations

import pstats
import subprocess
import sys
from pathlib import Path

PROFILER = Path(__file__).resolve().parents[2] / "bench" / "cpu_profile.py"

MODULE = """
import sys
import threading
import time


def spin() -> None:
    deadline = time.thread_time() + 0.3
    while time.thread_time() < deadline:
        pass


def doze() -> None:
    time.sleep(0.5)


worker = threading.Thread(target=spin, name="spinner")
worker.start()
doze()
worker.join()
sys.exit(3)
"""


def _seconds(stats: pstats.Stats, function: str) -> float:
    raw = stats.stats  # type: ignore[attr-defined]
    return sum(v[3] for k, v in raw.items() if k[2] == function)  # cumulative time


def test_each_thread_gets_its_own_cpu_profile(tmp_path: Path) -> None:
    (tmp_path / "busy.py").write_text(MODULE, encoding="utf-8")
    prefix = tmp_path / "out" / "run"
    done = subprocess.run(
        [sys.executable, str(PROFILER), str(prefix), "-m", "busy"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The module's exit status is kept, and the profiles are written all the same.
    assert done.returncode == 3, done.stderr
    files = sorted(p.name for p in prefix.parent.iterdir())
    assert files == ["run.MainThread.prof", "run.spinner.prof"], files
    main = pstats.Stats(str(prefix.parent / "run.MainThread.prof"))
    spinner = pstats.Stats(str(prefix.parent / "run.spinner.prof"))
    # The spinner's CPU is its own; the main thread's half-second sleep is not CPU.
    assert _seconds(spinner, "spin") >= 0.25
    assert _seconds(main, "doze") < 0.1
    assert _seconds(main, "spin") == 0.0
