"""The rollout benchmark runs end to end on 50 hosts (one repeat): the table is printed and
raorch sends at most 10 HTTP requests per host (NTLM over HTTPS: facts, snapshot, apply and
verify in one session). No timing is asserted (docs/development.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rollout.py"


def test_bench_smoke_50_hosts() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--hosts", "50", "--repeat", "1", "--baseline-hosts", "5"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[-1].startswith("headline: "), run.stdout
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[0] in ("floor", "raorch", "sequential", "per-setting"):
            rows[cells[0]] = cells
    assert set(rows) == {"floor", "raorch", "sequential", "per-setting"}, run.stdout
    raorch = rows["raorch"]
    assert raorch[1] == "50"
    requests_per_host = float(raorch[6])
    assert 0 < requests_per_host <= 10, run.stdout
    assert raorch[8] == "0", run.stdout  # no host failed
    # Per-setting opens a session per operation: many more requests than raorch.
    assert float(rows["per-setting"][6]) > 5 * requests_per_host, run.stdout
    assert re.search(r"CPU/host raorch/floor \d+\.\d+x", lines[-1]), lines[-1]


def test_bench_workers_smoke_two_sites(rabbitmq: object) -> None:
    """``--workers``: 20 hosts over two sites, two real workers, the session's RabbitMQ (a
    virtual host of its own is not needed: the queues are the bench's, and it deletes
    nothing): the table is printed and no host failed."""
    from rabbitmq import RabbitMQ

    assert isinstance(rabbitmq, RabbitMQ)
    run = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "2", "--hosts", "20", "--concurrency", "8",
         "--worker-concurrency", "4", "--broker", rabbitmq.url],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[-1].startswith("headline: ") and lines[-1].endswith("; 0 errors"), run.stdout

    def row_under(header: str) -> list[str]:
        at = next(i for i, line in enumerate(lines) if line.startswith(header))
        return [c.strip() for c in lines[at + 2].strip("|").split("|")]

    workers = row_under("| wall s | hosts/s | controller CPU ms/host |")
    assert len(workers) == 9 and workers[-1] == "0", run.stdout
    # The in-process engine on the same fleet, in the same run: no host failed either.
    in_process = row_under("| wall s | hosts/s | controller CPU ms/host | peak RSS MB |")
    assert len(in_process) == 6 and in_process[-1] == "0", run.stdout
