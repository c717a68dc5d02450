"""The sample playbook and inventory, shipped inside the package so that an installed raorch
(not a checkout) can start from them: ``raorch init`` writes copies, and ``raorch lab`` /
``raorch demo`` use the playbook when there is no checkout to take it from. They are the
repository's ``playbooks/offer-remote-assistance.yaml`` and ``inventories/corp.yaml``, byte for
byte (tests/unit/test_samples.py), laid out the same way by ``init`` so that the inventory's
relative ``playbook:`` path holds."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

# name in the package -> where `raorch init` writes it (relative to its directory)
SAMPLES: dict[str, str] = {
    "offer-remote-assistance.yaml": "playbooks/offer-remote-assistance.yaml",
    "corp.yaml": "inventories/corp.yaml",
}


def sample(name: str) -> Traversable:
    return files(__name__) / name
