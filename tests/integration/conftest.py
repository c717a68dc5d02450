"""Fixtures that start emulated fleets (raorch lab) for integration tests.

- ``lab_factory(hosts=..., mix=..., auth=..., scheme=..., faults=..., **kwargs)``: module-scoped;
  starts a lab (a child process by default) and returns its ``raorch.lab.LabHandle``; labs with
  the same arguments are shared within the module, all are stopped at its end. ``kwargs`` are
  those of ``raorch.lab.running_lab`` (accounts, user, password, in_process, seed, ...).
- ``lab``: a module-scoped default lab: 12 hosts, HTTPS + NTLM, the default mix.
- ``lab_client``: helpers that talk to a lab with the real pypsrp client:
  ``lab_client.wsman(handle, host, **overrides)`` -> ``pypsrp.wsman.WSMan``;
  ``lab_client.run_batch(handle, host, operations, script=BATCH_SCRIPT)`` -> ``BatchRun``
  (``outputs``: list of dicts, ``had_errors``, ``state``, ``errors``: error strings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.lab import LabHandle, running_lab

# The first line is the contract's marker (docs/remote-operations.md); the lab never runs
# the rest, a Windows host would.
BATCH_SCRIPT = "# raorch-batch v1\nparam($Operations)\n# (the batch body runs on Windows)\n"

LabFactory = Callable[..., LabHandle]


@pytest.fixture(scope="module")
def lab_factory() -> Iterator[LabFactory]:
    labs: dict[str, LabHandle] = {}
    with ExitStack() as stack:

        def start(**kwargs: Any) -> LabHandle:
            key = json.dumps(kwargs, sort_keys=True, default=str)
            if key not in labs:
                kwargs.setdefault("hosts", 12)
                labs[key] = stack.enter_context(running_lab(**kwargs))
            return labs[key]

        yield start


@pytest.fixture(scope="module")
def lab(lab_factory: LabFactory) -> LabHandle:
    return lab_factory(hosts=12)


@dataclass
class BatchRun:
    outputs: list[dict[str, Any]]
    had_errors: bool
    state: int
    errors: list[str] = field(default_factory=list)


class LabClient:
    @staticmethod
    def wsman(handle: LabHandle, host: str, **overrides: Any) -> WSMan:
        kwargs = handle.wsman_kwargs(host)
        kwargs.update(overrides)
        return WSMan(handle.address, **kwargs)

    @staticmethod
    def run_batch(
        handle: LabHandle,
        host: str,
        operations: list[dict[str, Any]],
        script: str = BATCH_SCRIPT,
        parameter: str = "Operations",
    ) -> BatchRun:
        """One session: open a pool, run one pipeline, close the pool."""
        with LabClient.wsman(handle, host) as wsman, RunspacePool(wsman) as pool:
            ps = PowerShell(pool)
            ps.add_script(script)
            if parameter:
                ps.add_parameter(parameter, operations)
            outputs = ps.invoke()
            return BatchRun(
                outputs=list(outputs),
                had_errors=ps.had_errors,
                state=int(ps.state),
                errors=[str(e) for e in ps.streams.error],
            )


@pytest.fixture(scope="session")
def lab_client() -> LabClient:
    return LabClient()
