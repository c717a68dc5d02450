"""raorch lab: an emulated Windows fleet that speaks real WinRM / PowerShell remoting.

One process, one asyncio event loop, one 127.0.0.1 port per emulated host. Each host is a
real WS-Management endpoint (``/wsman``, HTTP or HTTPS with the lab's own CA) with real
authentication (NTLM with message encryption, or Basic), PSRP through psrpcore's server
classes, and a model of the parts of Windows raorch touches (facts, registry, local groups,
firewall rules, a domain directory). It carries out raorch's batches by the contract in
docs/remote-operations.md and fails anything else. It imports nothing from raorch outside
``raorch.lab`` (a second, independent implementation of the contract); the engine never
imports it.

Python API (tests, benchmarks)::

    from raorch.lab import running_lab

    with running_lab(hosts=20, auth="ntlm", scheme="https", faults={...}) as lab:
        lab.ports                   # {"lab-0001": 41234, ...}
        lab.wsman_kwargs("lab-0001")  # for pypsrp.wsman.WSMan(lab.address, **kwargs)
        lab.inventory_path          # a ready inventory (password: env:RAORCH_LAB_PASSWORD)
        lab.password, lab.username, lab.ca_bundle, lab.state_dir
        lab.state("lab-0001")       # the host's state + runtime (requests, log of pipelines)
        lab.stats()                 # totals: requests, sessions, open shells, lab CPU seconds
        lab.set_faults({...})       # change faults while it runs (faults.py format)

``running_lab`` starts the lab in a child process by default (``in_process=True``: a
background thread). The full description is docs/lab.md.

Modules: profiles (host kinds and mixes), directory (domain accounts and trusts), registry,
host (the host model and its seeded initial state), operations (the contract), faults,
tls (CA and server certificate), auth (Basic, NTLM and message encryption), wsman (SOAP
envelopes), session (PSRP runspace pools and pipelines), server (the aiohttp fleet), state
(the state directory), inventory (the inventory written for a fleet), api (running_lab).
"""

from raorch.lab.api import LabError, LabHandle, running_lab
from raorch.lab.server import LabConfig, LabServer

__all__ = ["LabConfig", "LabError", "LabHandle", "LabServer", "running_lab"]
