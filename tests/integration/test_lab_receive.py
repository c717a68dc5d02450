"""A Receive whose reply is lost must not lose the pipeline's output (the lost-output defect).

pypsrp resends a Receive that timed out, byte for byte (``WSMan.receive``:
``retries_on_read_timeout=5``, "just sending the exact same request again will return the same
data"), and polls a running pipeline until it ends. When the lab had already taken the output
for the first request, whose reply never reached the client (a stalled path, an overloaded
event loop), the resent request found nothing, every later Receive was held until the
OperationTimeout and answered with the timeout fault, and the client polled for ever
(docs/lab.md, "Receive and its retransmission"). Here one Receive per pipeline stalls past the
client's read timeout (operation timeout 1 s: read timeout 11 s).
"""

from __future__ import annotations

from collections.abc import Callable

import yaml
from conftest import PLAYBOOK_FILE

from raorch.engine.host import HostMode, run_host
from raorch.lab import LabHandle
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome

LabFactory = Callable[..., LabHandle]


def test_a_resent_receive_gets_the_output_the_lost_reply_carried(
    lab_factory: LabFactory, tmp_path: object
) -> None:
    lab = lab_factory(
        hosts=2,
        mix="win10-ent:1",
        languages="en-US:1",
        faults={"faults": [{"hosts": ["lab-0001"], "stall_receive_ms": 12000}]},
    )
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["defaults"]["connection"]["operation_timeout"] = 1
    path = lab.state_dir / "receive-inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    inventory = load_inventory(path)
    playbook = load_playbook(PLAYBOOK_FILE)
    report = run_host(
        inventory.targets["lab-0001"], lab.password, playbook, inventory.domains, HostMode.PLAN
    )
    assert report.outcome is Outcome.CHANGED, report.reason
    assert report.changes
