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
- ``samba_dc``: session-scoped; a real Samba AD domain controller (``raorch.lab.samba.SambaDC``)
  provisioned in a temporary directory and serving Kerberos and LDAP on 127.0.0.1, with the users
  ``jdoe`` (in group ``RA-Helpers``) and the domain Administrator (``samba_dc.admin_password``).
  Without Samba the test is skipped with how to install it, except in CI (``CI=true``), where it
  fails. One DC per machine (Samba binds fixed ports): with ``RAORCH_TEST_SAMBA_DIR`` set, the DC
  provisioned there is reused (and left running if it was running), so that several test runs
  can share it; tests then give the objects they create unique names (``unique_name``).
- ``rabbitmq``: session-scoped; a real RabbitMQ (Debian's ``rabbitmq-server``) on 127.0.0.1 in
  a temporary directory (``rabbitmq.py``), stopped by its own process ids at the end. Without
  it the test is skipped with the install command, except in CI (``CI=true``), where it fails.
  ``broker``: a virtual host of it of the test's own (``broker.url``), so that no test sees
  another's queues.
- ``raorch_cli(handle, journal_url=None)`` -> ``RaorchCli``: the real ``raorch`` command
  (``run``, ``start``) with ``RAORCH_HOME`` under ``tmp_path`` and the lab's password in the
  environment (never an outer ``RAORCH_JOURNAL``; ``cli.environment`` adds variables);
  ``journal`` reads its journal (``JournalFile``): state.db, or the one at ``journal_url``
  (a PostgreSQL database of the ``postgres`` fixture, tests/conftest.py). Helpers for rollout
  tests (import them from ``conftest``): ``lab_inventory`` (the lab's inventory with other
  waves), ``touchable``, ``expected_refused``, ``playbook_problems``; for firewall rules
  ``wire_identity`` (a rule GetFirewallRules reported, as SetFirewallRule takes it) and
  ``rule_identity`` (as raorch's ``RuleIdentity``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rabbitmq as rabbitmq_server
import yaml
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.cli.journal import find_journal
from raorch.engine.journal import Journal
from raorch.engine.store import JournalReader
from raorch.lab import LabHandle, running_lab
from raorch.lab.samba import SambaDC, SambaError, samba_available
from raorch.models.remote import FirewallProfile, RuleDirection, RuleIdentity

# The first line is the contract's marker (docs/remote-operations.md); the lab never runs
# the rest, a Windows host would.
BATCH_SCRIPT = "# raorch-batch v1\nparam($Operations)\n# (the batch body runs on Windows)\n"

LabFactory = Callable[..., LabHandle]


def unique_name(prefix: str) -> str:
    """A directory object name no other test run uses (at most 15 characters: NetBIOS)."""
    return f"{prefix}{os.getpid() % 1000:03d}{next(_unique):03d}"[:15]


_unique = itertools.count(1)
SAMBA_USER = "jdoe"
SAMBA_USER_PASSWORD = "Jd0e-P@ssw0rd-Lab"


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    missing = samba_available()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Samba is not installed, and CI must run the domain tests: {missing}")
        pytest.skip(f"Samba is not installed: {missing}")
    shared = os.environ.get("RAORCH_TEST_SAMBA_DIR")
    if shared and SambaDC.listening():
        # A DC already serves this machine (Samba's ports are fixed: one DC per machine), the
        # one provisioned in RAORCH_TEST_SAMBA_DIR: share it (several test runs at once).
        yield SambaDC.attach(Path(shared))
        return
    dc = SambaDC(Path(shared) if shared else tmp_path_factory.mktemp("samba") / "dc")
    if dc.provisioned:
        dc = SambaDC.attach(dc.directory)
    else:
        dc.provision()
    dc.start()
    try:
        with contextlib.suppress(SambaError):  # a shared DC keeps them from an earlier run
            dc.add_user(SAMBA_USER, SAMBA_USER_PASSWORD)
            dc.add_group("RA-Helpers", (SAMBA_USER,))
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[rabbitmq_server.RabbitMQ]:
    missing = rabbitmq_server.missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the worker tests: {missing}")
        pytest.skip(missing)
    server = rabbitmq_server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Broker:
    """A virtual host of the test run's RabbitMQ, the test's own."""

    server: rabbitmq_server.RabbitMQ
    vhost: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.server.port}/{self.vhost}"

    def ctl(self, *args: str) -> str:
        return self.server.ctl(*args)

    def queue(self, name: str) -> tuple[int, int]:
        """A queue's (ready, unacknowledged) messages: (0, 0) once every task in it was
        taken by a worker and acknowledged (run or dropped)."""
        out = self.ctl(
            "list_queues", "-p", self.vhost, "--no-table-headers", "--quiet",
            "name", "messages_ready", "messages_unacknowledged",
        )  # fmt: skip
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == name:
                return int(fields[1]), int(fields[2])
        raise KeyError(name)


@pytest.fixture
def broker(rabbitmq: rabbitmq_server.RabbitMQ) -> Iterator[Broker]:
    vhost = f"t{os.getpid()}x{next(_unique)}"
    rabbitmq.ctl("add_vhost", vhost)
    rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield Broker(rabbitmq, vhost)
    finally:
        with contextlib.suppress(RuntimeError):
            rabbitmq.ctl("delete_vhost", vhost)


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

    @staticmethod
    def sid(handle: LabHandle, host: str, account: str) -> str:
        """The SID ``account`` resolves to on ``host`` (ResolveAccount): group members are added
        and removed by SID (docs/remote-operations.md)."""
        run = LabClient.run_batch(handle, host, [{"Op": "ResolveAccount", "Account": account}])
        [out] = run.outputs
        assert out["Ok"], out
        return str(out["Sid"])


@pytest.fixture(scope="session")
def lab_client() -> LabClient:
    return LabClient()


# ---------------------------------------------------------------- raorch rollout against a lab
# (issue 5) The real command runs in a subprocess with RAORCH_HOME in the test's tmp_path; its
# journal is read through the store's read side, the lab's hosts through its state API.

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_FILE = REPO / "playbooks" / "offer-remote-assistance.yaml"
# What the repository's playbook sets (playbooks/offer-remote-assistance.yaml).
PLAYBOOK_HELPERS = ("CORP\\RA-Helpers", "CORP\\jdoe")
CLI_WAIT = 300.0  # a bound so that a hung command fails the test instead of hanging CI

TS_KEY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
RAU_KEY = TS_KEY + "\\RAUnsolicit"
RA_MACHINE_KEY = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Remote Assistance"
OLE_KEY = "HKLM\\SOFTWARE\\Microsoft\\Ole"
FW_POLICY_KEY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall"
ADMINISTRATORS = "S-1-5-32-544"
RA_RULE_GROUP = "@FirewallAPI.dll,-33002"
LEGACY_PROFILES = frozenset({"xp-pro", "xp-home", "server2003"})
# Lab profiles the pre-flight checks must refuse (Home SKUs, outside the domain).
REFUSED_PROFILES = frozenset(
    {
        "xp-home",
        "win10-home",
        "win10-workgroup",
        "server2003-dc",
        "server2019-dc",
        "server2019-nora",
        "xp-pro-nohelp",
        # a GPO sets other data (domain_policy: refuse, the default); verify, which writes
        # nothing, reports it drifted instead. The default mix carries no such GPO.
        "win10-gpo-conflict",
    }
)


def lab_inventory(lab: LabHandle, path: Path, waves: list[dict[str, Any]]) -> Path:
    """The lab's own inventory (connections, credentials) with these waves instead of its own,
    the repository's playbook, and only the hosts the waves name (all with a ``rest`` wave)."""
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    if not any(w.get("rest") for w in waves):
        named = {h for w in waves for h in w.get("hosts", [])}
        data["hosts"] = {h: v for h, v in data["hosts"].items() if h in named}
    data["playbook"] = str(PLAYBOOK_FILE)
    data["waves"] = waves
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class JournalFile:
    """A look at a command's journal (``$RAORCH_HOME/state.db``, or the journal at ``url``: a
    PostgreSQL one) through the journal store's read side (``JournalReader``), the same
    questions on either backend. Opened per question, so that nothing is held open while a
    command writes (readers never block it); never created (a missing journal raises
    ``FileNotFoundError``). Rows come as dicts of the store's row fields (enums compare equal
    to their values), across the journal's rollouts, oldest first."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        self.url = url

    def _open(self) -> JournalReader | None:
        if self.url is not None:
            return find_journal(self.url)
        return Journal(self.path) if self.path.exists() else None

    def _read(self, question: Callable[[JournalReader], Any]) -> Any:
        journal = self._open()
        if journal is None:
            raise FileNotFoundError(self.url or self.path)
        try:
            return question(journal)
        finally:
            journal.close()

    def _each(self, question: Callable[[JournalReader, str], list[Any]]) -> list[Any]:
        """``question`` asked of every rollout, oldest first: the answers, one list."""
        return self._read(lambda j: [x for r in j.rollouts() for x in question(j, r.id)])

    def exists(self) -> bool:
        if self.url is None:
            return self.path.exists()
        journal = self._open()
        if journal is not None:
            journal.close()
        return journal is not None

    def rollouts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._read(lambda j: j.rollouts())]

    def rollout_ids(self) -> list[str]:
        return [r["id"] for r in self.rollouts()]

    def hosts(self, wave: str | None = None) -> dict[str, dict[str, Any]]:
        return {r.host: asdict(r) for r in self._each(lambda j, rid: j.hosts(rid, wave))}

    def outcome_counts(self, wave: str) -> dict[str, int]:
        rows = self._each(lambda j, rid: j.hosts(rid, wave))
        return dict(Counter(r.outcome.value for r in rows if r.outcome is not None))

    def waves(self) -> dict[str, dict[str, Any]]:
        return {r.name: asdict(r) for r in self._each(lambda j, rid: j.waves(rid))}

    def runs(self) -> list[dict[str, Any]]:
        return sorted((asdict(r) for r in self._each(lambda j, rid: j.runs(rid))), key=seq)

    def snapshots(self) -> dict[str, tuple[float, str]]:
        """host -> (taken_at, data)."""
        return {h: (at, data) for _, h, at, data in self.snapshot_rows()}

    def snapshot_rows(self) -> list[tuple[str, str, float, str]]:
        """(rollout id, host, taken_at, data) of every snapshot."""

        def of(journal: JournalReader, rid: str) -> list[tuple[str, str, float, str]]:
            return [
                (rid, host, journal.snapshot_taken_at(rid, host) or 0.0, data)
                for host, data in journal.snapshots(rid).items()
            ]

        return self._each(of)

    def rollbacks(self) -> list[dict[str, Any]]:
        """Each host's last rollback."""
        return [asdict(r) for r in self._each(lambda j, rid: j.rollbacks(rid))]

    def contents(self, rollout_id: str) -> list[dict[str, Any]]:
        return [asdict(c) for c in self._read(lambda j: j.contents(rollout_id))]

    def timeline(self, host: str) -> list[dict[str, Any]]:
        return [asdict(t) for t in self._each(lambda j, rid: j.timeline(rid, host))]

    def applied(self) -> dict[str, str]:
        """host -> what raorch changed there (JSON)."""
        return {h: d for h, d in self._each(lambda j, rid: list(j.applied_all(rid).items()))}

    def platforms(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self._each(lambda j, rid: list(j.platforms(rid).values()))]


def seq(run: dict[str, Any]) -> int:
    return int(run["seq"])


class RaorchCli:
    """The real ``raorch`` command for one lab and one state directory."""

    def __init__(
        self,
        lab: LabHandle,
        home: Path,
        procs: list[subprocess.Popen[str]],
        journal_url: str | None = None,
    ) -> None:
        self.lab = lab
        self.home = home
        self._procs = procs
        self.journal_url = journal_url  # where ``journal`` reads (the commands are told apart)
        self.environment: dict[str, str] = {}  # more variables for every command

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NO_COLOR", "COLUMNS", "LINES", "RAORCH_HOME", "RAORCH_JOURNAL")
        }
        env.update(RAORCH_HOME=str(self.home), RAORCH_LAB_PASSWORD=self.lab.password)
        env.update(self.environment)
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raorch", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_WAIT,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Started in the background, stdout a pipe (line by line), stderr into a file; killed
        at the test's end if still running."""
        err = (self.home.parent / f"stderr-{len(self._procs)}.txt").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "raorch", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        err.close()
        self._procs.append(proc)
        return proc

    @property
    def journal(self) -> JournalFile:
        return JournalFile(self.home / "state.db", self.journal_url)


@pytest.fixture
def raorch_cli(tmp_path: Path) -> Iterator[Callable[..., RaorchCli]]:
    """``raorch_cli(lab, journal_url=None)`` -> ``RaorchCli`` with ``RAORCH_HOME`` under
    ``tmp_path``; every process it started is killed at the end, also when the test failed."""
    procs: list[subprocess.Popen[str]] = []
    count = 0

    def make(lab: LabHandle, journal_url: str | None = None) -> RaorchCli:
        nonlocal count
        count += 1
        home = tmp_path / f"raorch-{count}" / "home"
        home.parent.mkdir(parents=True)
        return RaorchCli(lab, home, procs, journal_url)

    yield make
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def wire_identity(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as GetFirewallRules reported it, less Enabled: the ``Rule`` of SetFirewallRule
    (docs/remote-operations.md; the display name alone would also reach the twin)."""
    return {k: v for k, v in rule.items() if k != "Enabled"}


def rule_identity(rule: dict[str, Any]) -> RuleIdentity:
    """A rule GetFirewallRules reported, as raorch's planning names it."""
    return RuleIdentity(
        rule["Name"],
        RuleDirection(rule["Direction"]),
        FirewallProfile(rule["Profiles"]),
        rule["Protocol"],
        rule["LocalPorts"] or "",
        rule["ApplicationName"] or "",
        rule["ServiceName"] or "",
    )


def lab_registry(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k.casefold(): v for k, v in state["registry"].items()}


def lab_values(state: dict[str, Any], key: str) -> dict[str, Any]:
    return lab_registry(state).get(key.casefold(), {})


def touchable(state: dict[str, Any]) -> dict[str, Any]:
    """What raorch may change on a lab host, to compare before/after (empty keys ignored: a
    restore may leave a key it created, empty, as Windows' own tools do). Not the group "Offer
    Remote Assistance Helpers": Windows derives it from the policy when the Remote Assistance
    task runs (docs/windows.md, section 11), so after a value was changed behind raorch's back
    it follows the policy rather than the state before."""
    return {
        "registry": {k: v for k, v in lab_registry(state).items() if v},
        "groups": {
            sid: sorted(m["sid"] for m in g["members"])
            for sid, g in state["groups"].items()
            if g["name"] != "Offer Remote Assistance Helpers"
        },
        "rules": {n: r["enabled"] for n, r in (state["firewall_rules"] or {}).items()},
    }


def expected_refused(state: dict[str, Any]) -> bool:
    """Whether the pre-flight must refuse this lab host under the repository's playbook:
    a Home or workgroup profile, or Solicited RA turned off on the machine (the lab never sets
    the policy value, so the machine value decides; docs/planning.md)."""
    machine = lab_values(state, RA_MACHINE_KEY).get("fAllowToGetHelp")
    solicited_off = machine == {"type": "REG_DWORD", "data": 0}
    return state["profile"] in REFUSED_PROFILES or solicited_off


def playbook_problems(state: dict[str, Any]) -> list[str]:
    """Where a lab host differs from what the repository's playbook sets (empty: compliant)."""
    problems: list[str] = []

    def want(key: str, name: str, kind: str, data: Any) -> None:
        found = lab_values(state, key).get(name)
        if found != {"type": kind, "data": data}:
            problems.append(f"{key}\\{name}: {found} (want {kind} {data!r})")

    want(TS_KEY, "fAllowUnsolicited", "REG_DWORD", 1)
    want(TS_KEY, "fAllowUnsolicitedFullControl", "REG_DWORD", 1)  # view_and_control
    want(OLE_KEY, "EnableDCOM", "REG_SZ", "Y")
    helpers = {n.casefold() for n in lab_values(state, RAU_KEY)}
    for helper in PLAYBOOK_HELPERS:
        if helper.casefold() not in helpers:
            problems.append(f"{RAU_KEY}: helper {helper} missing ({sorted(helpers)})")
    admins = {m["name"].casefold() for m in state["groups"][ADMINISTRATORS]["members"]}
    if state["profile"] in LEGACY_PROFILES:
        # add_helpers: legacy_only; the KB's port and program exceptions in both profiles.
        for helper in PLAYBOOK_HELPERS:
            if helper.casefold() not in admins:
                problems.append(f"Administrators: {helper} missing")
        for profile in ("DomainProfile", "StandardProfile"):
            ports = lab_values(state, f"{FW_POLICY_KEY}\\{profile}\\GloballyOpenPorts\\List")
            apps = lab_values(state, f"{FW_POLICY_KEY}\\{profile}\\AuthorizedApplications\\List")
            if "135:TCP" not in ports:
                problems.append(f"{profile}: port 135:TCP missing")
            if len([a for a in apps if "HelpCtr" in a or "Sessmgr" in a]) != 3:
                problems.append(f"{profile}: RA programs missing ({sorted(apps)})")
    else:
        for helper in PLAYBOOK_HELPERS:
            if helper.casefold() in admins:
                problems.append(f"Administrators: {helper} added on a modern host")
        for name, rule in (state["firewall_rules"] or {}).items():
            if rule["group"] == RA_RULE_GROUP and rule["profile_mask"] & 1 and not rule["enabled"]:
                problems.append(f"firewall rule {name} (Domain) not enabled")
    return problems


# ---------------------------------------------------------------- the slow suite

# Whole files heavier than the README's test command allows (the suite in under 10 minutes on
# 2 cores): they carry the `slow` marker and run with `pytest -m slow`, which .ci/run runs too.
SLOW_FILES = frozenset(
    {
        "test_bench_smoke.py",  # a whole benchmark round: four systems against fresh labs
        "test_crash_safety.py",  # SIGKILLs across rollouts and rollbacks
        "test_dashboard_pty.py",  # status in a pseudo-terminal over a live rollout
        "test_faults_at_scale.py",  # every fault class at once
        "test_lab_concurrency.py",  # 500 concurrent sessions
        "test_lab_fuzz.py",  # hypothesis against the WS-Man endpoint
        "test_rollback_exact.py",  # apply + rollback on every profile, byte for byte
        "test_rollout_pty.py",  # rollout in a pseudo-terminal
        "test_security_secrets.py",  # every command twice over, searched for the password
        "test_verify_cli.py",  # verify over several rollouts and drifts
    }
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


# ---------------------------------------------------------------- a child's stdout, read live

CHILD_WAIT = 120.0  # a bound so that a hung child fails the test instead of hanging CI


class Lines:
    """The lines a child writes on stdout, read by a thread (so that waiting is bounded)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def host_lines(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("lab-")]

    def drain(self) -> list[str]:
        """Every line the child wrote so far, without waiting."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)  # the end stays for wait_for to see
                return self.lines
            self.lines.append(line)

    def wait_for(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + CHILD_WAIT
        while not condition():
            assert time.monotonic() < deadline, f"the condition never came; stdout: {self.lines}"
            try:
                line = self._queue.get(timeout=0.02)
            except queue.Empty:
                continue
            assert line is not None, f"the command ended before the kill point: {self.lines}"
            self.lines.append(line)
