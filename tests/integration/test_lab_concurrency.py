"""500 concurrent sessions (threads, one WSMan per thread, as winrm-notes.md requires) against
one lab: all complete, no error, no shell left open."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
LabClient = Any  # the lab_client fixture (conftest.py)

SESSIONS = 500
HOSTS = 100


def test_500_concurrent_sessions(lab_factory: LabFactory, lab_client: LabClient) -> None:
    handle = lab_factory(hosts=HOSTS, scheme="https", auth="ntlm")
    hosts = handle.hosts
    before = handle.stats()

    def session(i: int) -> str | None:
        host = hosts[i % len(hosts)]
        try:
            run = lab_client.run_batch(handle, host, [{"Op": "GetFacts"}])
        except Exception as exc:  # collected and reported below, all at once
            return f"{host}: {type(exc).__name__}: {exc}"
        if run.had_errors or not run.outputs[0]["Ok"]:
            return f"{host}: {run.errors or run.outputs}"
        if run.outputs[0]["ComputerName"] != host.upper():
            return f"{host}: answered as {run.outputs[0]['ComputerName']}"
        return None

    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        errors = [e for e in pool.map(session, range(SESSIONS)) if e]
    assert errors == []
    after = handle.stats()
    assert after["sessions"] - before["sessions"] == SESSIONS
    assert after["open_shells"] == 0
    assert after["total_requests"] - before["total_requests"] == SESSIONS * 7
