"""The samples shipped in the package are the repository's, byte for byte, and `raorch init`
writes them in the repository's layout (so the inventory's relative playbook path holds)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from raorch.cli.main import main
from raorch.models.errors import ExitCode
from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
from raorch.samples import SAMPLES, sample

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_samples_are_the_repositorys() -> None:
    for name, relative in SAMPLES.items():
        assert sample(name).read_bytes() == (ROOT / relative).read_bytes(), relative


def test_init_writes_samples_that_load_and_never_overwrites(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["init", str(tmp_path / "start")])
    assert done.exit_code == 0, done.output
    inventory = load_inventory(tmp_path / "start" / "inventories" / "corp.yaml")
    playbook = load_playbook(resolve_playbook_path(inventory, None))
    assert playbook.name == "offer-remote-assistance"
    again = runner.invoke(main, ["init", str(tmp_path / "start")])
    assert again.exit_code == ExitCode.REFUSED
    assert "already exist" in again.output and "nothing was written" in again.output
