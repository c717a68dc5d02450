"""``bench/rollout.py --workers W --sites S`` refuses W < S at once: workers are dealt to the
sites in turn, so a site would have none, and its hosts would wait in its queue until their
deadline (600 s) before failing. Found by the issue-20 run with one worker over two sites."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rollout.py"
# A broker nobody listens on: the refusal must come before any broker, lab or worker.
NOWHERE = "amqp://guest:guest@127.0.0.1:1//"


def test_fewer_workers_than_sites_is_refused_before_anything_starts() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "1", "--sites", "2", "--hosts", "4",
         "--broker", NOWHERE],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "--workers 1 leaves a site without a worker" in run.stderr, run.stderr[-2000:]


def test_one_worker_per_site_is_accepted_by_the_arguments() -> None:
    """The same check lets W >= S through (here it then fails on the broker nobody runs:
    past the arguments, not refused by them)."""
    run = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "1", "--sites", "1", "--hosts", "4",
         "--broker", NOWHERE, "--skip", "in-process"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode != 2, run.stderr[-2000:]
    assert "leaves a site without a worker" not in run.stderr
    assert "a worker did not start" in run.stdout + run.stderr, run.stderr[-2000:]
