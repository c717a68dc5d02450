"""The command group: every registered command loads under its name, and a command imports
only what it uses (the lab's WinRM server stays out of ``raorch rollout``)."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from raorch.cli.main import main


def test_every_command_loads_under_its_name() -> None:
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert {"rollout", "rollback", "verify", "plan", "status", "lab", "demo", "show"} <= set(names)
    for name in names:
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0


def test_rollout_does_not_import_the_lab() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from raorch.cli.main import main\n"
        "result = CliRunner().invoke(main, ['rollout', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('raorch.lab', 'aiohttp'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
