"""Hosts run by workers per site (issue 20): a real RabbitMQ (the ``broker`` fixture), real
``raorch worker`` processes, and two sites served by two separate labs.

The controller runs without the labs' passwords: each site's workers have their own lab's
password in their environment (``env:RAORCH_LAB_PASSWORD``), the only place it is read. The
broker's firehose (RabbitMQ's tracer) copies every message published in the test's virtual host,
tasks and results, so that the tests can say no password went through it.

The two-site run and the worker SIGKILL run on both journals (SQLite; PostgreSQL with
``-m slow``, with the controller killed).

What must hold (the issue's "Must hold"): a worker SIGKILLed mid-wave, its host redelivered to
the other worker of its site, the original snapshot kept and no host applied twice (each
host's write pipelines counted in the lab); a site without workers (shown so, its hosts failed
at their deadline naming the site, its tasks never run afterwards); a gate failure that gives
the queued tasks back (never run) and rolls the wave back through the workers; rollback through
the workers; the controller killed and the same command resuming.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    CHILD_WAIT,
    CLI_WAIT,
    PLAYBOOK_FILE,
    Broker,
    JournalFile,
    Lines,
    playbook_problems,
    touchable,
)

from raorch.lab import LabHandle, running_lab

SITES = ("paris", "lyon")
REST = {"name": "later", "rest": True}  # the hosts a test's wave leaves out
WRITES = frozenset(
    {
        "SetValue",
        "DeleteValue",
        "DeleteKey",
        "AddGroupMember",
        "RemoveGroupMember",
        "SetFirewallRule",
    }
)


def write_pipelines(lab: LabHandle, host: str) -> int:
    """Pipelines the lab carried out on ``host`` that held a write (docs/remote-operations.md:
    an apply is one such pipeline; a host applied twice has two)."""
    count = 0
    for entry in lab.state(host)["runtime"]["log"]:
        for command in entry["commands"]:
            for name, value in command["parameters"]:
                ops = value if name == "Operations" and isinstance(value, list) else []
                if any(isinstance(op, dict) and op.get("Op") in WRITES for op in ops):
                    count += 1
    return count


@dataclass
class Worker:
    site: str
    process: subprocess.Popen[str]
    lines: Lines

    def wait_for(self, condition: Callable[[list[str]], bool]) -> None:
        self.lines.wait_for(lambda: condition(self.lines.lines))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines.drain())


@dataclass
class Fleet:
    """Two sites, each a lab of its own; one inventory naming the hosts ``<site>-000N``."""

    labs: dict[str, LabHandle]
    broker: Broker
    tmp: Path
    journal_url: str | None = None  # None: the state directory's SQLite file
    inventory: Path = field(init=False)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.inventory = self.tmp / "fleet.yaml"

    def hosts(self, site: str) -> list[str]:
        return [f"{site}-{name[4:]}" for name in self.labs[site].hosts]

    def lab_of(self, host: str) -> tuple[LabHandle, str]:
        site, _, number = host.partition("-")
        return self.labs[site], f"lab-{number}"

    def write_inventory(self, waves: list[dict[str, Any]]) -> Path:
        hosts: dict[str, Any] = {}
        for site, lab in self.labs.items():
            data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
            ca = data["defaults"]["connection"]["ca_bundle"]
            for name, entry in data["hosts"].items():
                hosts[f"{site}-{name[4:]}"] = {
                    "address": entry["address"],
                    "site": site,
                    "connection": {"port": entry["connection"]["port"], "ca_bundle": ca},
                    # the site's account; its password env:RAORCH_LAB_PASSWORD, read only
                    # by that site's workers (each has its own lab's)
                    "credentials": data["defaults"]["credentials"],
                }
        inventory = {
            "playbook": str(PLAYBOOK_FILE),
            "domains": ["CORP"],
            "defaults": {"connection": {"scheme": "https", "auth": "ntlm"}},
            "hosts": hosts,
            "waves": waves,
        }
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
        return self.inventory

    def env(self, site: str | None = None) -> dict[str, str]:
        """The controller's environment (no password), or a site's worker's (its lab's)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NO_COLOR", "COLUMNS", "LINES", "RAORCH_HOME", "RAORCH_LAB_PASSWORD")
        }
        env["RAORCH_HOME"] = str(self.home)
        env.pop("RAORCH_JOURNAL", None)
        if self.journal_url is not None:
            env["RAORCH_JOURNAL"] = self.journal_url  # the controller's and the workers'
        if site is not None:
            env["RAORCH_LAB_PASSWORD"] = self.labs[site].password
        return env

    def worker(self, site: str, concurrency: int = 1) -> Worker:
        """A real ``raorch worker`` of the site, once it consumes its queue."""
        process = subprocess.Popen(
            [sys.executable, "-m", "raorch", "worker", "--site", site, "--broker",
             self.broker.url, "--concurrency", str(concurrency)],
            env=self.env(site),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )  # fmt: skip
        self.procs.append(process)
        worker = Worker(site, process, Lines(process))
        worker.wait_for(lambda lines: any("raorch worker: ready" in ln for ln in lines))
        return worker

    def raorch(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raorch", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=CLI_WAIT,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        err = (self.tmp / f"controller-{len(self.procs)}.err").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "raorch", *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        err.close()
        self.procs.append(process)
        return process

    def rollout(self, wave: str, *extra: str) -> tuple[str, ...]:
        return ("rollout", "--inventory", str(self.inventory), "--wave", wave,
                "--broker", self.broker.url, "--no-dashboard", *extra)  # fmt: skip

    @property
    def journal(self) -> JournalFile:
        return JournalFile(self.home / "state.db", self.journal_url)

    def stop(self) -> None:
        for process in self.procs:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def journal_url(request: pytest.FixtureRequest) -> str | None:
    """The journal the controller and the workers share: the SQLite file (None), or a
    PostgreSQL database (tests/conftest.py, ``postgres_url``; with ``-m slow``)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@contextlib.contextmanager
def two_sites(
    broker: Broker,
    tmp_path: Path,
    hosts: int = 3,
    faults: dict[str, Any] | None = None,
    journal_url: str | None = None,
) -> Iterator[Fleet]:
    # In one process, two labs serve two accounts (a lab of the process owns its account).
    common: dict[str, Any] = {"hosts": hosts, "mix": "win10-ent:1", "faults": faults}
    with (
        running_lab(**common, in_process=True, user="CORP\\parisadmin") as paris,
        running_lab(**common, in_process=True, user="CORP\\lyonadmin") as lyon,
    ):
        fleet = Fleet({"paris": paris, "lyon": lyon}, broker, tmp_path, journal_url)
        try:
            yield fleet
        finally:
            fleet.stop()


class Firehose:
    """Every message published in the virtual host, copied by RabbitMQ's tracer (the
    ``amq.rabbitmq.trace`` exchange) into a queue of ours."""

    def __init__(self, broker: Broker) -> None:
        from kombu import Connection, Exchange, Queue

        broker.ctl("trace_on", "-p", broker.vhost)
        self.connection = Connection(broker.url)
        self.queue = Queue(
            "test.firehose",
            Exchange("amq.rabbitmq.trace", type="topic", passive=True),
            routing_key="#",
        )
        self.queue(self.connection.default_channel).declare()

    def bodies(self) -> list[bytes]:
        out: list[bytes] = []
        with self.connection.SimpleQueue(self.queue) as simple:
            while True:
                try:
                    message = simple.get(block=True, timeout=1)
                except simple.Empty:
                    return out
                out.append(message.body if isinstance(message.body, bytes) else
                           str(message.body).encode())  # fmt: skip
                out.append(json.dumps(message.headers, default=str).encode())
                message.ack()

    def close(self) -> None:
        self.connection.release()


# ---------------------------------------------------------------- two sites, two labs


def test_two_sites_run_on_their_own_workers_and_roll_back_through_them(
    broker: Broker, tmp_path: Path, journal_url: str | None
) -> None:
    with two_sites(broker, tmp_path, journal_url=journal_url) as fleet:
        before = {
            h: fleet.lab_of(h)[0].state(fleet.lab_of(h)[1]) for s in SITES for h in fleet.hosts(s)
        }
        fleet.write_inventory([{"name": "w", "rest": True, "max_fail_percentage": 0}])
        firehose = Firehose(broker)
        workers = {site: fleet.worker(site, concurrency=2) for site in SITES}

        done = fleet.raorch(*fleet.rollout("w", "--json"))
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout)
        assert summary["counts"] == {"changed": 6}
        rows = fleet.journal.hosts()
        assert {h: r["outcome"] for h, r in rows.items()} == {
            h: "changed" for s in SITES for h in fleet.hosts(s)
        }
        for site, worker in workers.items():
            # each site's hosts on its own worker (with its own lab's password), only those
            worker.wait_for(lambda lines: len(_finished(lines, "changed")) == 3)
            assert sorted(_finished(worker.lines.lines, "changed")) == fleet.hosts(site)
        for host in rows:
            lab, name = fleet.lab_of(host)
            assert playbook_problems(lab.state(name)) == [] and write_pipelines(lab, name) == 1
        snapshots = fleet.journal.snapshots()
        assert set(snapshots) == set(rows)  # committed by the workers, into the shared journal

        status = fleet.raorch("status", "--json")
        sites = {s["site"]: s for s in json.loads(status.stdout)["sites"]}
        assert set(sites) == set(SITES)
        assert all(s["counts"] == {"changed": 3} for s in sites.values())

        back = fleet.raorch(
            "rollback", "--last", "--broker", broker.url, "--no-dashboard", "--json"
        )
        assert back.returncode == 0, back.stdout + back.stderr
        assert json.loads(back.stdout)["counts"] == {"rolled_back": 6}
        for host, state in before.items():
            lab, name = fleet.lab_of(host)
            assert touchable(lab.state(name)) == touchable(state), host
        for site, worker in workers.items():
            worker.wait_for(lambda lines: len(_finished(lines, "rolled_back")) == 3)
            assert sorted(_finished(worker.lines.lines, "rolled_back")) == fleet.hosts(site)

        # Nothing that went through the broker (tasks, results, both ways) held a password.
        messages = firehose.bodies()
        firehose.close()
        assert any(b"raorch.host" in m for m in messages)  # the tasks were seen
        assert any(b"SUCCESS" in m and b"outcome" in m for m in messages)  # and results
        for lab in fleet.labs.values():
            assert not any(lab.password.encode() in m for m in messages)


def _finished(lines: list[str], outcome: str) -> list[str]:
    """The hosts a worker's lines say ended with ``outcome`` ("HOST: OUTCOME")."""
    return [ln.split(":")[0] for ln in lines if ln.endswith(f": {outcome}")]


# ---------------------------------------------------------------- a worker killed mid-host

# Every request answered this late: a host's apply lasts long after its snapshot is committed.
SLOW = {"faults": [{"share": 1.0, "latency_ms": 300}]}


def test_a_worker_killed_mid_host_its_task_goes_to_the_other_worker_of_its_site(
    broker: Broker, tmp_path: Path, journal_url: str | None
) -> None:
    with two_sites(broker, tmp_path, hosts=3, faults=SLOW, journal_url=journal_url) as fleet:
        paris = fleet.hosts("paris")
        fleet.write_inventory([{"name": "w", "hosts": paris, "max_fail_percentage": 0}, REST])
        workers = [fleet.worker("paris"), fleet.worker("paris")]
        controller = fleet.start(*fleet.rollout("w", "--concurrency", "1", "--deadline", "120"))
        journal = fleet.journal

        # One host at a time (--concurrency 1): the first worker to take one is killed once
        # its writes are carried out on the host (the lab ran its write pipeline), before its
        # result came back: the other worker of the site is the only one to redeliver it to,
        # and must find the host done, from the ORIGINAL snapshot, and write nothing again.
        def taken() -> Worker | None:
            for worker in workers:
                if any(": apply (" in ln for ln in worker.lines.drain()):
                    return worker
            return None

        _wait(lambda: taken() is not None)
        first = taken()
        assert first is not None
        second = next(w for w in workers if w is not first)
        host = next(ln for ln in first.lines.lines if ": apply (" in ln).split(":")[0]
        assert host == paris[0]
        lab, lab_host = fleet.lab_of(host)
        _wait(lambda: write_pipelines(lab, lab_host) == 1, pause=0.01)
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(timeout=CHILD_WAIT) == -signal.SIGKILL
        original = journal.snapshots()[host]  # committed before the writes
        # the kill came before the host's outcome (else this test proves nothing)
        assert journal.hosts()[host]["outcome"] is None

        assert controller.wait(timeout=CLI_WAIT) == 0
        rows = journal.hosts()
        assert {h: r["outcome"] for h, r in rows.items()} == {h: "changed" for h in paris}
        # redelivered to the other worker, which resumed from the journal's snapshot: nothing
        # left to write, and the host is "changed" (raorch changed it, the snapshot says so)
        second.wait_for(lambda lines: f"{host}: changed" in lines)
        assert second.said(f"{host}: the journal holds its snapshot from an earlier attempt")
        assert journal.snapshots()[host] == original  # never replaced
        for name in paris:
            lab, lab_host = fleet.lab_of(name)
            assert playbook_problems(lab.state(lab_host)) == []
            assert write_pipelines(lab, lab_host) == 1, name  # no host applied twice


# ---------------------------------------------------------------- a site without workers


def test_a_site_without_workers_is_shown_so_and_its_hosts_fail_at_their_deadline(
    broker: Broker, tmp_path: Path
) -> None:
    with two_sites(broker, tmp_path, hosts=2) as fleet:
        fleet.write_inventory([{"name": "w", "rest": True, "max_fail_percentage": 100}])
        fleet.worker("paris")
        args = fleet.rollout("w", "--deadline", "8", "--no-worker-after", "1")
        controller = fleet.start(*args)
        journal = fleet.journal

        def lyon_shown_without_worker() -> bool:
            status = fleet.raorch("status", "--json")
            if status.returncode != 0:
                return False
            sites = {s["site"]: s for s in json.loads(status.stdout)["sites"]}
            return sites.get("lyon", {}).get("no_worker_since") is not None

        _wait(lyon_shown_without_worker)
        text = fleet.raorch("status", "--no-dashboard").stdout
        assert "site lyon: NO WORKER since" in text, text
        assert controller.wait(timeout=CLI_WAIT) == 1  # lyon's hosts failed; the gate held

        rows = journal.hosts()
        for host in fleet.hosts("paris"):
            assert rows[host]["outcome"] == "changed"
        for host in fleet.hosts("lyon"):
            row = rows[host]
            assert row["outcome"] == "failed" and row["stage"] == "deadline", row
            assert "no worker of site lyon took it" in row["reason"], row

        # A worker that comes later never runs the hosts the controller failed: it takes their
        # tasks and drops them (each acknowledged only once dropped or run: acks late).
        fleet.worker("lyon")
        _wait(lambda: fleet.broker.queue("raorch.site.lyon") == (0, 0))
        for host in fleet.hosts("lyon"):
            lab, name = fleet.lab_of(host)
            assert lab.state(name)["runtime"]["requests"] == 0, host


def _wait(condition: Callable[[], bool], pause: float = 0.2) -> None:
    deadline = time.monotonic() + CHILD_WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition never came"
        time.sleep(pause)


# ---------------------------------------------------------------- a gate failure


def test_a_gate_failure_gives_back_the_queued_tasks_and_rolls_back_through_the_workers(
    broker: Broker, tmp_path: Path
) -> None:
    # lab-0001 of paris denies enabling the firewall rules: its apply fails (and is restored).
    faults = {"faults": [{"hosts": ["lab-0001"], "deny": [{"op": "SetFirewallRule"}]}]}
    with two_sites(broker, tmp_path, hosts=5, faults=faults) as fleet:
        paris = fleet.hosts("paris")
        fleet.write_inventory(
            [
                {
                    "name": "w",
                    "hosts": paris,
                    "max_fail_percentage": 0,
                    "on_gate_failure": "rollback",
                },
                REST,
            ]
        )
        before = {h: fleet.lab_of(h)[0].state(fleet.lab_of(h)[1]) for h in paris}
        worker = fleet.worker("paris")  # one host at a time: the others wait in the queue
        done = fleet.raorch(*fleet.rollout("w", "--concurrency", "5", "--json"))
        assert done.returncode == 3, done.stdout + done.stderr  # the gate failed
        summary = json.loads(done.stdout)
        assert summary["state"] == "halted" and summary["failed_hosts"] == [paris[0]]
        rows = fleet.journal.hosts()
        ran = [h for h in paris if rows[h]["outcome"] is not None]
        # The worker may have taken the next host as it finished the first, before the
        # controller read the first result; the others were given back, never run.
        assert ran in ([paris[0]], paris[:2]), rows
        for host in paris[len(ran) :]:
            lab, name = fleet.lab_of(host)
            assert rows[host]["outcome"] is None
            assert lab.state(name)["runtime"]["requests"] == 0, host
        # on_gate_failure: rollback, through the same worker: every host as before
        assert summary["rollback"] is not None
        for host in paris:
            lab, name = fleet.lab_of(host)
            assert touchable(lab.state(name)) == touchable(before[host]), host
        assert not worker.said(f"{paris[-1]}:")  # the last one never reached the worker


# ---------------------------------------------------------------- the controller killed


@pytest.mark.slow
def test_the_controller_killed_the_same_command_resumes(broker: Broker, tmp_path: Path) -> None:
    with two_sites(broker, tmp_path, hosts=3, faults=SLOW) as fleet:
        fleet.write_inventory([{"name": "w", "rest": True, "max_fail_percentage": 0}])
        for site in SITES:
            fleet.worker(site)
        args = fleet.rollout("w", "--concurrency", "2", "--deadline", "120")
        controller = fleet.start(*args)
        lines = Lines(controller)
        # a host finished (its line printed), others in flight
        lines.wait_for(lambda: any("  w  changed" in ln for ln in lines.lines))
        controller.send_signal(signal.SIGKILL)
        assert controller.wait(timeout=CHILD_WAIT) == -signal.SIGKILL
        killed = fleet.journal.snapshots()

        again = fleet.raorch(*args, "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        rows = fleet.journal.hosts()
        everyone = [h for s in SITES for h in fleet.hosts(s)]
        assert {h: r["outcome"] for h, r in rows.items()} == {h: "changed" for h in everyone}
        snapshots = fleet.journal.snapshots()
        for host, stored in killed.items():
            assert snapshots[host] == stored, host
        for host in everyone:
            lab, name = fleet.lab_of(host)
            assert write_pipelines(lab, name) == 1, host
