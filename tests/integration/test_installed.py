"""raorch installed as a user installs it (a wheel, not an editable checkout), run from a
directory that is not the repository: the README's main command, `raorch demo`, works, and
`raorch init` gives a playbook and inventory to start from (issue: operator mistakes, "outside
the repository"). Before, the demo looked for `playbooks/` next to the code or in the working
directory and failed with "no playbook given"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_and_init_work_from_any_directory_after_a_wheel_install(tmp_path: Path) -> None:
    # A copy of the sources, so that building does not write build/ into the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAORCH_HOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)

    def raorch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raorch", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import raorch; print(raorch.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout  # the wheel, not the checkout

    demo = raorch("demo", "--hosts", "6", "--no-dashboard", "--workdir", "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "journal:" in demo.stdout

    init = raorch("init", "start")
    assert init.returncode == 0, init.stdout + init.stderr
    valid = raorch("validate", "-i", "start/inventories/corp.yaml")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "valid:" in valid.stdout
