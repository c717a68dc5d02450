"""Start a lab from Python (tests, benchmarks): ``running_lab`` and ``LabHandle``.

A lab runs either in a child process (default: its own CPU, own file descriptors, a crash
or hang cannot take the test process with it) or in a background thread of the caller
(``in_process=True``). Both are driven the same way: through the state directory's ready
marker and the lab's admin endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raorch.lab.domain import DomainConfig, computer_account
from raorch.lab.inventory import InventorySpec, write_inventory
from raorch.lab.profiles import DEFAULT_LANGUAGES, DEFAULT_MIX
from raorch.lab.samba import SambaDC
from raorch.lab.server import LabConfig, LabServer
from raorch.lab.state import marker_file, read_json

DEFAULT_USER = "CORP\\labadmin"
READY_TIMEOUT = 120.0


class LabError(RuntimeError):
    """The lab did not start or does not answer; the message says why and where to look."""


@dataclass
class LabHandle:
    """A running lab. ``ports`` maps host names (lab-0001, ...) to their 127.0.0.1 port."""

    ports: dict[str, int]
    username: str
    password: str
    scheme: str
    auth: str
    state_dir: Path
    inventory_path: Path
    ca_bundle: Path | None
    faults_path: Path
    admin_port: int
    admin_token: str
    pid: int
    address: str = "127.0.0.1"
    # A domain lab: realm, netbios, dns_domain, kdc, krb5_conf, dc_dir, own_dc (lab.json).
    domain: dict[str, Any] | None = None
    _stopper: Any = field(default=None, repr=False)

    @property
    def hosts(self) -> list[str]:
        return list(self.ports)

    @property
    def realm(self) -> str | None:
        return str(self.domain["realm"]) if self.domain else None

    @property
    def krb5_conf(self) -> Path | None:
        """The krb5.conf that finds the lab's KDC (KRB5_CONFIG for Kerberos clients)."""
        return Path(self.domain["krb5_conf"]) if self.domain else None

    def fqdn(self, host: str) -> str:
        """The host's DNS name in the domain, which its SPNs name (WSMAN/, HTTP/, HOST/):
        ``lab-0001.corp.raorch.test`` (``lab-0001.<tag>.corp.raorch.test`` on a shared DC)."""
        if not self.domain:
            raise LabError("this lab has no domain (running_lab(directory='samba'))")
        return f"{host}.{self.domain['dns_domain']}"

    def computer_account(self, host: str) -> str:
        """The host's computer account (sAMAccountName without ``$``): ``LAB-0001``, or
        ``<TAG>-0001`` on a shared DC; its SPNs can be removed with samba-tool to make a
        host's SPN unknown to the KDC."""
        if not self.domain:
            raise LabError("this lab has no domain (running_lab(directory='samba'))")
        return computer_account(host, str(self.domain.get("tag") or ""))

    def principal(self, account: str | None = None) -> str:
        """``CORP\\name`` as a Kerberos principal, ``name@CORP.RAORCH.TEST`` (pyspnego hands a
        user name to krb5_parse_name, where a backslash escapes: Kerberos needs this form)."""
        _domain, _, name = (account or self.username).rpartition("\\")
        return f"{name}@{self.realm}"

    def port(self, host: str) -> int:
        return self.ports[host]

    def wsman_kwargs(self, host: str) -> dict[str, Any]:
        """Keyword arguments for ``pypsrp.wsman.WSMan(handle.address, **kwargs)``."""
        kw: dict[str, Any] = {
            "port": self.ports[host],
            "username": self.username,
            "password": self.password,
            "ssl": self.scheme == "https",
            "auth": self.auth,
            "cert_validation": str(self.ca_bundle) if self.scheme == "https" else False,
            "connection_timeout": 10,
            "read_timeout": 30,
            "operation_timeout": 20,
        }
        if self.auth == "basic":
            kw["encryption"] = "never"
        if self.auth in ("kerberos", "negotiate") and self.domain:
            # The SPN names the host, not the 127.0.0.1 the client connects to.
            kw["negotiate_hostname_override"] = self.fqdn(host)
            kw["username"] = self.principal()
        return kw

    # ------------------------------------------------------------ admin endpoint

    def _get(self, path: str, method: str = "GET", timeout: float = 10.0) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}",
            method=method,
            headers={"X-Lab-Token": self.admin_token},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def state(self, host: str) -> dict[str, Any]:
        """The host's state in the ``raorch lab state`` shape, plus ``runtime``: requests,
        sessions, open_shells, pipelines, faults and ``log`` (the last 100 pipelines:
        ``{"time", "commands": [{"script", "is_script", "parameters": [[name, value]]}]}``)."""
        result: dict[str, Any] = self._get(f"/state/{host}")
        return result

    def stats(self) -> dict[str, Any]:
        """Totals: total_requests, sessions, pipelines, open_shells, cpu_seconds (the lab
        process's user+system CPU), requests per host, faults_generation, faults_error."""
        result: dict[str, Any] = self._get("/stats")
        return result

    def set_faults(self, faults: Mapping[str, Any] | None) -> None:
        """Replace the lab's faults (faults.py format) and wait until they apply."""
        text = yaml.safe_dump(dict(faults or {}), sort_keys=False)
        tmp = self.faults_path.with_name(self.faults_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.faults_path)
        answer = self._get("/reload-faults", method="POST")
        if answer.get("error"):
            raise LabError(f"the lab refused the faults: {answer['error']}")

    def simulate_offer(self, host: str) -> dict[str, Any]:
        """An expert offers Remote Assistance to an XP / 2003 host: helpsvc's access check, which
        caches the helpers list in RAUnsolicit's default value (docs/lab.md). Returns
        ``{"host", "outcome", "access_list"}``; a modern host is refused (LabError)."""
        try:
            result: dict[str, Any] = self._get(f"/offer/{host}", method="POST")
        except urllib.error.HTTPError as exc:
            reason = json.loads(exc.read()).get("error", exc.reason)
            raise LabError(f"simulated offer to {host}: {reason}") from None
        return result

    def gpupdate(self, host: str) -> dict[str, Any]:
        """A Group Policy refresh on ``host`` (gpupdate /force): the winning settings of the GPOs
        in its RSoP are written over the registry, then RemoteAssistanceTask runs (docs/lab.md,
        "Group Policy"). Returns ``{"host", "changed": [HKLM\\key\\name, ...]}``."""
        try:
            result: dict[str, Any] = self._get(f"/gpupdate/{host}", method="POST")
        except urllib.error.HTTPError as exc:
            reason = json.loads(exc.read()).get("error", exc.reason)
            raise LabError(f"Group Policy refresh on {host}: {reason}") from None
        return result

    def account(self, host: str, name: str) -> dict[str, Any]:
        """How ``host`` resolves the account ``name`` (``DOMAIN\\name``): ``{"host",
        "account", "mapped", "sid", "error" (NotMapped, TrustFailure or None), "directory"}``;
        in a domain lab ``directory`` is what the DC holds (``{"account", "sid", "kind"`` (user,
        group, computer), ``"disabled", "dn"}``), else None."""
        query = urllib.parse.urlencode({"name": name})
        result: dict[str, Any] = self._get(f"/account/{host}?{query}")
        return result

    def stop(self) -> None:
        if self._stopper is not None:
            self._stopper()
            self._stopper = None


@dataclass
class _ChildConfig:
    hosts: int
    password: str
    state_dir: str
    mix: str
    auth: list[str]
    scheme: str
    username: str
    faults_path: str | None
    accounts: list[str]
    base_port: int | None
    seed: int
    fresh: bool
    languages: str
    # The process that started the lab: the child exits when it is gone (see watch_parent).
    parent_pid: int | None = None
    domain: dict[str, Any] | None = None  # DomainConfig's fields
    groups: list[str] = field(default_factory=list)
    refuse_ntlm: bool = False


@contextlib.contextmanager
def running_lab(
    hosts: int = 10,
    *,
    mix: str = DEFAULT_MIX,
    auth: str = "ntlm",
    scheme: str = "https",
    faults: Mapping[str, Any] | None = None,
    accounts: list[str] | None = None,
    user: str = DEFAULT_USER,
    password: str | None = None,
    state_dir: Path | None = None,
    inventory_out: Path | None = None,
    base_port: int | None = None,
    seed: int = 0,
    fresh: bool = True,
    languages: str = DEFAULT_LANGUAGES,
    in_process: bool = False,
    directory: str = "embedded",
    samba_dc: SambaDC | None = None,
    groups: list[str] | None = None,
    refuse_ntlm: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[LabHandle]:
    """Start a lab of ``hosts`` emulated hosts, yield a ``LabHandle``, stop it on exit.

    ``faults`` is the faults file's content as a mapping (faults.py); ``state_dir`` defaults
    to a new temporary directory (removed afterwards); ``inventory_out`` defaults to
    ``<state_dir>/inventory.yaml``; ``password`` defaults to a random one. ``fresh`` ignores
    saved host states in ``state_dir``.

    ``directory="samba"``: the hosts are members of a real domain (docs/lab.md, "A real
    domain"). With ``samba_dc`` (a running ``SambaDC``, e.g. the ``samba_dc`` test fixture)
    the lab attaches to it and names its hosts ``<host>.<tag>.<realm>`` with a tag of its own
    (one DC serves many labs); without, it provisions and starts its own DC in
    ``<state_dir>/samba`` and stops it with the lab (one DC per machine: Samba's ports are
    fixed). ``user`` must then be an account of the DC's domain (CORP); on a shared DC give
    each lab its own, since the lab sets that user's password. ``groups``: the accounts of
    ``accounts`` to create as groups. ``refuse_ntlm``: the hosts refuse NTLM.

    ``env``: variables added to a child lab's environment (e.g. libfaketime's ``LD_PRELOAD``
    and ``FAKETIME``, to skew the hosts' clock against the KDC's); not for ``in_process``.
    """
    if env and in_process:
        raise ValueError("env is for a lab in a child process (in_process=False)")
    if directory not in ("embedded", "samba"):
        raise ValueError(f"directory must be 'embedded' or 'samba', not {directory!r}")
    if samba_dc is not None and directory != "samba":
        raise ValueError("samba_dc is for directory='samba'")
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="raorch-lab-")))
        state_dir = state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        password = password or os.urandom(12).hex() + "Aa1!"
        faults_path = state_dir / "faults.yaml"
        faults_path.write_text(yaml.safe_dump(dict(faults or {})), encoding="utf-8")
        domain: DomainConfig | None = None
        if samba_dc is not None:
            domain = DomainConfig(str(samba_dc.directory), start_dc=False, tag=_lab_tag())
        elif directory == "samba":
            domain = DomainConfig(str(state_dir / "samba"), start_dc=True)
        config = _ChildConfig(
            hosts=hosts,
            password=password,
            state_dir=str(state_dir),
            mix=mix,
            auth=[a.strip() for a in auth.split(",")],
            scheme=scheme,
            username=user,
            faults_path=str(faults_path),
            accounts=list(accounts or []),
            base_port=base_port,
            seed=seed,
            fresh=fresh,
            languages=languages,
            parent_pid=None if in_process else os.getpid(),
            domain=asdict(domain) if domain else None,
            groups=list(groups or []),
            refuse_ntlm=refuse_ntlm,
        )
        marker_file(state_dir).unlink(missing_ok=True)
        stopper: _ThreadStopper | _ChildStopper = (
            _start_thread(config) if in_process else _start_child(config, state_dir, env)
        )
        stack.callback(stopper)
        marker = _wait_ready(state_dir, stopper)
        inventory_path = (inventory_out or state_dir / "inventory.yaml").resolve()
        ca = Path(marker["ca_bundle"]) if marker.get("ca_bundle") else None
        ports = {str(k): int(v) for k, v in marker["hosts"].items()}
        write_inventory(
            InventorySpec(
                ports=ports,
                scheme=scheme,
                auth=config.auth[0],
                username=user,
                password_ref="env:RAORCH_LAB_PASSWORD",
                ca_bundle=ca,
                domain=marker.get("domain"),
            ),
            inventory_path,
        )
        handle = LabHandle(
            ports=ports,
            username=user,
            password=password,
            scheme=scheme,
            auth=config.auth[0],
            state_dir=state_dir,
            inventory_path=inventory_path,
            ca_bundle=ca,
            faults_path=faults_path,
            admin_port=int(marker["admin_port"]),
            admin_token=str(marker["admin_token"]),
            pid=int(marker["pid"]),
            domain=marker.get("domain"),
            _stopper=stopper,
        )
        yield handle
        handle.stop()


def _lab_config(c: _ChildConfig) -> LabConfig:
    return LabConfig(
        hosts=c.hosts,
        password=c.password,
        state_dir=Path(c.state_dir),
        mix=c.mix,
        auth=tuple(c.auth),
        scheme=c.scheme,
        username=c.username,
        faults_path=Path(c.faults_path) if c.faults_path else None,
        accounts=c.accounts,
        base_port=c.base_port,
        seed=c.seed,
        fresh=c.fresh,
        languages=c.languages,
        domain=DomainConfig(**c.domain) if c.domain else None,
        groups=list(c.groups),
        refuse_ntlm=c.refuse_ntlm,
    )


def _lab_tag() -> str:
    """A DNS label of this lab's own on a shared DC (computer accounts ``<TAG>-0001``: at
    most 15 characters with five-digit host numbers)."""
    return "l" + secrets.token_hex(3)


def _wait_ready(state_dir: Path, stopper: Any) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    path = marker_file(state_dir)
    while time.monotonic() < deadline:
        failure = getattr(stopper, "failure", lambda: None)()
        if failure:
            raise LabError(f"the lab did not start: {failure}")
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                marker: dict[str, Any] = read_json(path)
                return marker
        time.sleep(0.05)
    stopper()
    raise LabError(f"the lab did not become ready within {READY_TIMEOUT:g}s (no {path})")


class _ThreadStopper:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, stop: asyncio.Event
    ) -> None:
        self.loop, self.thread, self.stop = loop, thread, stop
        self.error: BaseException | None = None

    def failure(self) -> str | None:
        return f"{type(self.error).__name__}: {self.error}" if self.error else None

    def __call__(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
            self.thread.join(timeout=30)


def _start_thread(config: _ChildConfig) -> _ThreadStopper:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: None, daemon=True)
    stopper = _ThreadStopper(loop, thread, stop)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve_until(LabServer(_lab_config(config)), stop))
        except BaseException as exc:  # reported to the starting thread by failure()
            stopper.error = exc
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="raorch-lab", daemon=True)
    stopper.thread = thread
    thread.start()
    return stopper


async def _serve_until(server: LabServer, stop: asyncio.Event) -> None:
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()


class _ChildStopper:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def failure(self) -> str | None:
        if self.proc.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return (
            f"lab process exited with {self.proc.returncode}; its output ({self.log_path}):\n{tail}"
        )

    def __call__(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start_child(
    config: _ChildConfig, state_dir: Path, env: Mapping[str, str] | None = None
) -> _ChildStopper:
    log_path = state_dir / "lab-process.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from raorch.lab.api import child_main; child_main()"],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env} if env else None,
    )
    log.close()
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(asdict(config)).encode())
    proc.stdin.close()
    return _ChildStopper(proc, log_path)


def child_main() -> None:
    """Entry point of a lab child process: its configuration arrives as JSON on stdin."""
    config = _ChildConfig(**json.loads(sys.stdin.read()))
    run_foreground(_lab_config(config), parent_pid=config.parent_pid)


# How often a child lab looks whether its parent is still there.
PARENT_POLL = 0.5


async def watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once ``parent_pid`` is no longer this process's parent.

    A lab started by raorch for its own use (the test harness, ``raorch demo``, ``bench/``)
    must not outlive it: when the parent is killed (SIGKILL leaves it no chance to stop the
    lab), the child is re-parented (to init or a subreaper) and ``getppid()`` changes. Polling
    rather than Linux's PR_SET_PDEATHSIG: that fires when the parent *thread* that forked the
    child ends, which a thread pool would trigger, and it is Linux-only.
    """
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL)
    stop.set()


def run_foreground(config: LabConfig, on_ready: Any = None, parent_pid: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM (or, with ``parent_pid``, until that parent is gone), then
    stop cleanly (listeners closed, marker removed)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watcher = None
        if parent_pid is not None:
            watcher = asyncio.create_task(watch_parent(parent_pid, stop))
        server = LabServer(config)
        try:
            await server.start()
            if on_ready is not None:
                on_ready(server)
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            await server.stop()

    asyncio.run(main())
