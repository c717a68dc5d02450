"""`raorch init [DIR]`: write the sample playbook and inventory to start from.

An installed raorch has no checkout around it: the samples ship inside the package
(``raorch.samples``) and are written as ``DIR/playbooks/offer-remote-assistance.yaml`` and
``DIR/inventories/corp.yaml``, the repository's layout, so that the inventory's relative
``playbook:`` path holds. Existing files are never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import click

from raorch.cli.errors import handle_errors
from raorch.models.errors import RefusedError
from raorch.samples import SAMPLES, sample


@click.command("init")
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, path_type=Path), required=False
)
@handle_errors
def init(directory: Path) -> None:
    """Write a sample playbook and inventory into DIRECTORY (default: here) to start from."""
    targets = {name: directory / relative for name, relative in SAMPLES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise RefusedError(
            f"{', '.join(existing)} already exist(s); nothing was written",
            "choose another directory (raorch init DIR), or move the files away",
        )
    for name, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample(name).read_bytes())
        click.echo(f"wrote {path}")
    inventory = directory / SAMPLES["corp.yaml"]
    click.echo(
        f"next: edit the hosts and waves in {inventory}, then `raorch validate -i {inventory}`"
    )
