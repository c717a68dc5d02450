"""`raorch demo`: the main job end to end on an emulated fleet, in one command.

Starts a lab of mixed Windows hosts in a child process (its own event loop, its own CPU),
waits for it to listen, rolls out every wave of the inventory it wrote, in order, through the
real engine and journal, prints the summary and where the journal is, and stops the lab.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from raorch.models.errors import ExitCode, RaorchError
from raorch.models.load import load_inventory

READY_TIMEOUT = 120.0


class LabStartError(RaorchError):
    exit_code = ExitCode.REFUSED


def start_lab(
    workdir: Path, hosts: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    state = workdir / "lab-state"
    inventory = workdir / "lab.yaml"
    for stale in (state / "lab.json", inventory):
        stale.unlink(missing_ok=True)
    log = (workdir / "lab.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raorch",
            "lab",
            "up",
            "--hosts",
            str(hosts),
            "--inventory-out",
            str(inventory),
            "--state-dir",
            str(state),
            # A killed demo must not leave its lab running (docs/lab.md).
            "--exit-with",
            str(os.getpid()),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabStartError(
                f"the lab exited with code {proc.returncode} before it was ready",
                f"see {workdir / 'lab.log'}",
            )
        if (state / "lab.json").exists() and inventory.exists():
            return proc, inventory
        time.sleep(0.2)
    stop_lab(proc)
    raise LabStartError(
        f"the lab was not ready after {READY_TIMEOUT:g} s", f"see {workdir / 'lab.log'}"
    )


def stop_lab(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@click.command("demo")
@click.option(
    "--hosts",
    default=50,
    show_default=True,
    type=click.IntRange(3, 2000),
    help="Emulated hosts in the lab.",
)
@click.option(
    "--workdir",
    default="raorch-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the lab, its inventory and the journal go.",
)
@click.option("--no-dashboard", is_flag=True, help="Plain lines instead of the live view.")
def demo(hosts: int, workdir: str, no_dashboard: bool) -> None:
    """Try raorch without a domain: a lab fleet, every wave rolled out, the journal kept."""
    from raorch.cli.rollout import run_rollout

    console = Console()
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    env = dict(os.environ)
    # The lab's login; reaches the lab and the controller only through the environment.
    env.setdefault("RAORCH_LAB_PASSWORD", secrets.token_urlsafe(18))
    os.environ["RAORCH_LAB_PASSWORD"] = env["RAORCH_LAB_PASSWORD"]
    os.environ.setdefault("RAORCH_HOME", str(work / ".raorch"))
    console.print(f"starting a lab of {hosts} emulated Windows hosts (NTLM over HTTPS) ...")
    proc, inventory_path = start_lab(work, hosts, env)
    worst = ExitCode.OK
    try:
        inventory = load_inventory(inventory_path)
        console.print(f"lab up; inventory: {inventory_path}")
        for wave in inventory.waves:
            console.rule(f"wave {wave.name} ({len(wave.hosts)} hosts)")
            code = run_rollout(
                str(inventory_path),
                None,
                wave.name,
                limit=None,
                force=False,
                concurrency=32,
                deadline=None,
                dashboard=not no_dashboard,
                as_json=False,
                console=console,
                # The lab writes its inventory anew at every start (new ports): a demo stopped
                # half-way and run again goes on with the same rollout, not a refusal.
                go_on=True,
            )
            worst = max(worst, code)
            if code in (ExitCode.GATE_FAILED, ExitCode.INTERRUPTED):
                console.print(f"wave {wave.name} did not hold its gate; stopping here.")
                break
    finally:
        stop_lab(proc)
    home = os.environ["RAORCH_HOME"]
    console.print(f"journal: {home}/state.db", soft_wrap=True, highlight=False)
    console.print(
        f"see it again: RAORCH_HOME={home} raorch status --last", soft_wrap=True, highlight=False
    )
    console.print(
        f"the change report (one HTML file): RAORCH_HOME={home} raorch report --last",
        soft_wrap=True,
        highlight=False,
    )
    raise click.exceptions.Exit(int(worst))
