"""Lab CPU per session: the lab process's own CPU (user + system, getrusage in the lab)
divided by the sessions it served, for each scheme and auth, in one run.

    python bench/lab_cpu.py [SESSIONS] [THREADS]

Each session is what raorch does on a compliant host: open a pool, one pipeline (a batch of
GetFacts and six reads), close. Clients are pypsrp threads, one WSMan per thread.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.lab import running_lab

OPS = [
    {"Op": "GetFacts"},
    {"Op": "ResolveAccount", "Account": "CORP\\RA-Helpers"},
    {
        "Op": "ReadValues",
        "Key": "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services",
        "Names": ["fAllowUnsolicited", "fAllowUnsolicitedFullControl", "fAllowToGetHelp"],
    },
    {
        "Op": "ListKey",
        "Key": "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services\\RAUnsolicit",
    },
    {"Op": "ReadValues", "Key": "HKLM\\SOFTWARE\\Microsoft\\Ole", "Names": ["EnableDCOM"]},
    {"Op": "GetGroup", "Sid": "S-1-5-32-544"},
    {"Op": "GetFirewallRules", "Group": "@FirewallAPI.dll,-33002"},
]


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(f"{sessions} sessions, {threads} client threads, 50 hosts (win10-ent)")
    print("| scheme + auth | lab CPU / session | requests / session | wall time |")
    print("|---|---|---|---|")
    for scheme, auth in (
        ("https", "ntlm"),
        ("http", "ntlm"),
        ("https", "basic"),
        ("http", "basic"),
    ):
        with running_lab(hosts=50, mix="win10-ent:1", scheme=scheme, auth=auth) as lab:

            def one(i: int) -> None:
                host = lab.hosts[i % len(lab.hosts)]
                with WSMan(lab.address, **lab.wsman_kwargs(host)) as w, RunspacePool(w) as pool:
                    ps = PowerShell(pool)
                    ps.add_script("# raorch-batch v1\n").add_parameter("Operations", OPS)
                    out = ps.invoke()
                    assert not ps.had_errors and len(out) == len(OPS)

            one(0)  # warm-up: imports, first TLS handshake
            before = lab.stats()
            start = time.monotonic()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, range(sessions)))
            wall = time.monotonic() - start
            after = lab.stats()
            cpu = (after["cpu_seconds"] - before["cpu_seconds"]) / sessions
            reqs = (after["total_requests"] - before["total_requests"]) / sessions
            print(f"| {scheme} + {auth} | {cpu * 1000:.1f} ms | {reqs:.0f} | {wall:.1f} s |")


if __name__ == "__main__":
    main()
