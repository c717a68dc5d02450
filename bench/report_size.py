"""How big the change report of a large rollout is (issue 18; the figure is in docs/report.md).

    python bench/report_size.py [--hosts 10000] [--source STATE_DB] [--out report.html]
                                [--browser]

A 10,000-host rollout on the lab takes long on a small machine, so the journal measured is
synthetic but made of real parts: every host of it copies one host of a real lab rollout
(``--source``, a journal; by default ``raorch demo --hosts 200`` is run into a temporary
directory to make one): its outcome, reason, Windows and the very change list raorch wrote
there. Hosts are named like a domain's (``ws-00042.corp.example.com``), spread over three waves
(canary 1%, pilot 9%, broad 90%) with pauses of an hour and a day between them, and 0.5% of
them fail to connect with a message naming their own address (so failure reasons are many and
distinct, as on a real network). The journal is written through ``Journal.record`` and its
save methods, as the engine writes it; the report is built and rendered as ``raorch report``
does. ``--browser``: also time headless chromium loading the page (``--dump-dom``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raorch.engine.journal import Journal
from raorch.engine.report import build_report
from raorch.engine.report_html import render_report
from raorch.models.events import (
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState

T0 = 1_800_000_000.0


def demo_journal(workdir: Path) -> Path:
    """A real lab rollout of 200 hosts (every wave), its journal."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raorch",
            "demo",
            "--hosts",
            "200",
            "--workdir",
            str(workdir),
            "--no-dashboard",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "RAORCH_HOME"},
    )
    return workdir / ".raorch" / "state.db"


def synthetic(source: Path, target: Path, n: int) -> str:
    src = Journal(source)
    row = src.last_rollout()
    assert row is not None, f"no rollout in {source}"
    models = [h for h in src.hosts(row.id) if h.outcome is not None]
    applied = src.applied_all(row.id)
    platforms = src.platforms(row.id)
    src.close()

    journal = Journal(target)
    waves = ("canary", "pilot", "broad")
    rollout = journal.open_rollout("f" * 64, "/srv/raorch/corp.yaml", "/srv/raorch/ra.yaml", waves)
    sizes = [max(1, n // 100), max(1, n * 9 // 100)]
    sizes.append(n - sum(sizes))
    clock = T0
    index = 0
    for w, (wave, size) in enumerate(zip(waves, sizes, strict=True)):
        clock += (0, 3600, 86400)[w]  # the board's pauses between waves
        journal.record(RolloutStarted(rollout.id, RunKind.ROLLOUT, "", "", waves, clock))
        journal.record(WaveStarted(rollout.id, wave, size, 5.0, clock))
        failed = 0
        for _ in range(size):
            index += 1
            host = f"ws-{index:05d}.corp.example.com"
            model = models[index % len(models)]
            clock += 0.05
            journal.record(HostStarted(rollout.id, wave, host, clock))
            outcome, reason = model.outcome, None
            if model.reason is not None and model.stage is not None:
                reason = Reason(model.stage, model.reason)
            if index % 200 == 0:
                outcome = Outcome.FAILED
                reason = Reason(
                    Stage.CONNECT,
                    f"host {host}: opening the session: the connection was refused; check "
                    f"that WinRM listens at https://{host}:5986/wsman",
                )
                failed += 1
            elif model.host in applied:
                journal.save_applied(rollout.id, host, applied[model.host])
            platform = platforms.get(model.host)
            if platform is not None:
                journal.save_platform(
                    rollout.id, host, platform.caption, platform.os_version, platform.profile
                )
            assert outcome is not None
            journal.record(HostFinished(rollout.id, wave, host, outcome, reason, 0.6, clock + 0.6))
        share = 100.0 * failed / size
        journal.record(
            GateEvaluated(rollout.id, wave, size, failed, share, 5.0, share <= 5.0, clock)
        )
        journal.record(WaveFinished(rollout.id, wave, WaveState.DONE, {}, clock + 1))
        journal.record(RolloutFinished(rollout.id, clock + 1))
    journal.close()
    return rollout.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = args.source or demo_journal(work / "demo")
        started = time.perf_counter()
        rollout_id = synthetic(source, work / "big" / "state.db", args.hosts)
        written = time.perf_counter() - started
        journal = Journal(work / "big" / "state.db")
        started = time.perf_counter()
        report = build_report(journal, rollout_id, generated_at=time.time())
        built = time.perf_counter() - started
        started = time.perf_counter()
        page = render_report(report).encode("utf-8")
        rendered = time.perf_counter() - started
        journal.close()
        out = args.out or work / "report.html"
        out.write_bytes(page)
        figures: dict[str, object] = {
            "hosts": report.host_count,
            "change_lists": len(report.change_sets),
            "bytes": len(page),
            "mib": round(len(page) / 2**20, 2),
            "bytes_per_host": round(len(page) / max(1, report.host_count)),
            "journal_write_s": round(written, 1),
            "build_s": round(built, 2),
            "render_s": round(rendered, 2),
        }
        chromium = shutil.which("chromium")
        if args.browser and chromium:
            started = time.perf_counter()
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={work / 'chromium'}",
                    "--dump-dom",
                    out.resolve().as_uri(),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            figures["chromium_dump_dom_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
