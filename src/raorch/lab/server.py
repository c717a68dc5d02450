"""The lab server: many emulated Windows hosts, each its own WinRM listener on 127.0.0.1, all
served by one aiohttp application on one event loop.

Each host has its own port (a ``SockSite``); a request's host is found from the local port
of its connection. Authentication state lives per TCP connection (auth.py). What a host
answers is decided by wsman.py (envelopes), session.py (PSRP) and operations.py (the
contract). Faults (faults.py) are applied here, per request.

A second, plain-HTTP listener (the admin endpoint, token-protected, 127.0.0.1 only) serves
live state and counters to ``raorch lab state`` and to the Python API (api.py).

With a domain (``LabConfig.domain``, domain.py) the hosts are members of a real Samba AD
domain: they accept Kerberos, resolve that domain's accounts in its DC, and admit only
accounts of their local Administrators group (the access check of WinRM's default session
configuration, below).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import os
import random
import resource
import secrets
import socket
import ssl
import struct
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from psrpcore import PSRPCoreError

from raorch.lab import wsman
from raorch.lab.auth import (
    Authenticator,
    AuthRefused,
    BadMessage,
    ConnectionAuth,
    Credentials,
    encrypted_content_type,
    encryption_protocol,
    spn_host,
    unwrap,
    wrap,
)
from raorch.lab.directory import Directory, default_directory, domain_sid
from raorch.lab.domain import DomainConfig, DomainDirectory, LabDomain, domain_accounts
from raorch.lab.faults import NO_FAULTS, FaultPlan, FaultsError, HostFaults, load_faults
from raorch.lab.grouppolicy import gpupdate
from raorch.lab.host import ADMINISTRATORS_SID, Host, Member, host_name, seed_host
from raorch.lab.operations import MARKER, resolve_account, run_pipeline
from raorch.lab.profiles import (
    DEFAULT_LANGUAGES,
    DEFAULT_MIX,
    assign_profiles,
    parse_languages,
    parse_mix,
)
from raorch.lab.remoteassistance import NotLegacy, helpsvc_offer
from raorch.lab.session import Commands, Shell
from raorch.lab.state import host_file, hosts_dir, marker_file, read_json, write_json
from raorch.lab.tls import LabCertificates, make_certificates

LOG_SIZE = 100  # pipelines remembered per host for tests
# WinRM's answer to an authenticated account that the session configuration's security
# descriptor does not admit (the default one admits BUILTIN\Administrators, and Remote
# Management Users on later Windows): HTTP 500, a fault with subcode w:InternalError and
# WSManFault code 2147942405 (0x80070005, E_ACCESSDENIED), "Access is denied."
# (as clients report it: wazuh/wazuh-ansible issue 581, diyan/pywinrm issue 275).
ACCESS_DENIED_CODE = 2147942405
ACCESS_DENIED_TEXT = "Access is denied. "
FAULTS_POLL_SECONDS = 0.5
_NS_WSA = "{http://schemas.xmlsoap.org/ws/2004/08/addressing}"


log = logging.getLogger("raorch.lab")


@dataclass
class LabConfig:
    hosts: int
    password: str
    state_dir: Path
    mix: str = DEFAULT_MIX
    auth: tuple[str, ...] = ("ntlm",)
    scheme: str = "https"
    username: str = "CORP\\labadmin"
    faults_path: Path | None = None  # default: <state-dir>/faults.yaml
    accounts: list[str] = field(default_factory=list)
    base_port: int | None = None  # None: the OS picks a free port per host
    seed: int = 0
    fresh: bool = False  # ignore saved host states
    languages: str = DEFAULT_LANGUAGES
    # A real domain (domain.py): None keeps the emulated directory and NTLM / Basic only.
    domain: DomainConfig | None = None
    groups: list[str] = field(default_factory=list)  # accounts (of ``accounts``) that are groups
    refuse_ntlm: bool = False  # hosts refuse NTLM (an NTLM-restricted domain)


@dataclass
class HostRuntime:
    """A host and what the server knows about it while it runs."""

    host: Host
    port: int
    faults: HostFaults = NO_FAULTS
    shells: dict[str, Shell] = field(default_factory=dict)
    requests: int = 0
    sessions: int = 0
    pipelines: int = 0
    log: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_SIZE)
    )
    # One entry per session (a shell created): who, and which mechanism authenticated them.
    session_log: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_SIZE)
    )
    site: web.SockSite | None = None
    placeholder: socket.socket | None = None  # keeps the port while "unreachable"


class LabServer:
    """Start with ``await start()``, stop with ``await stop()``; ``ports`` maps host names."""

    def __init__(self, config: LabConfig) -> None:
        if config.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {config.scheme!r}")
        self.config = config
        self.state_dir = config.state_dir
        self.faults_path = config.faults_path or config.state_dir / "faults.yaml"
        self.runtimes: dict[str, HostRuntime] = {}
        self.by_port: dict[int, HostRuntime] = {}
        self.directory: Directory = default_directory(config.username, config.accounts)
        self.plan = FaultPlan()
        self.faults_error: str | None = None
        self.faults_generation = 0
        self.total_requests = 0
        self.admin_port = 0
        self.admin_token = secrets.token_urlsafe(24)
        self.started = ""
        self._faults_mtime: float | None = None
        self._conns: weakref.WeakKeyDictionary[Any, ConnectionAuth] = weakref.WeakKeyDictionary()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None
        self._certs: LabCertificates | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._texts: dict[str, str] = {}
        self.auth: Authenticator | None = None
        self.domain: LabDomain | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def ports(self) -> dict[str, int]:
        return {name: rt.port for name, rt in self.runtimes.items()}

    @property
    def ca_bundle(self) -> Path | None:
        return self._certs.ca_path if self._certs else None

    async def start(self) -> None:
        raise_fd_limit()
        cfg = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        hosts_dir(self.state_dir).mkdir(exist_ok=True)
        marker_file(self.state_dir).unlink(missing_ok=True)
        if cfg.scheme == "https":
            self._certs = make_certificates(self.state_dir / "tls")
            self._ssl = self._certs.server_context()
        try:
            if cfg.domain is not None:
                self._open_domain(cfg.domain)
            self.auth = Authenticator(
                cfg.auth,
                Credentials(cfg.username, cfg.password),
                self._certs.cbt_application_data if self._certs else None,
                realm=self.domain.realm if self.domain else None,
                netbios=self.domain.netbios if self.domain else None,
                refuse_ntlm=cfg.refuse_ntlm,
            )
            self._build_hosts()
            if self.domain is not None:
                self._join_domain(self.domain)
        except BaseException:
            if self.domain is not None:
                self.domain.close()
            raise
        self._reload_faults(initial=True)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/wsman", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        for rt in self.runtimes.values():
            await self._open_listener(rt)
        admin = web.Application()
        admin.router.add_get("/state/{host}", self._admin_state)
        admin.router.add_get("/stats", self._admin_stats)
        admin.router.add_post("/reload-faults", self._admin_reload)
        admin.router.add_post("/offer/{host}", self._admin_offer)
        admin.router.add_post("/gpupdate/{host}", self._admin_gpupdate)
        admin.router.add_get("/account/{host}", self._admin_account)
        self._admin_runner = web.AppRunner(admin, access_log=None, shutdown_timeout=1.0)
        await self._admin_runner.setup()
        admin_sock = _bind(0)
        admin_sock.listen(64)
        self.admin_port = admin_sock.getsockname()[1]
        await web.SockSite(self._admin_runner, admin_sock).start()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch_faults())
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_marker()

    async def stop(self) -> None:
        self._closing.set()
        for rt in self.runtimes.values():
            for shell in rt.shells.values():
                shell.wakeup.set()
        if self._watch_task:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for runner in (self._runner, self._admin_runner):
            if runner is not None:
                await runner.cleanup()
        for rt in self.runtimes.values():
            if rt.placeholder is not None:
                rt.placeholder.close()
                rt.placeholder = None
        marker_file(self.state_dir).unlink(missing_ok=True)
        if self.auth is not None:
            self.auth.close()
            self.auth = None
        if isinstance(self.directory, DomainDirectory):
            self.directory.ldap.close()
        if self.domain is not None:
            domain, self.domain = self.domain, None
            await asyncio.get_running_loop().run_in_executor(None, domain.close)

    def _open_domain(self, config: DomainConfig) -> None:
        """Start (or attach to) the DC and create the accounts the fleet needs."""
        cfg = self.config
        domain = LabDomain(config, self.state_dir)
        self.domain = domain
        domain.open()
        domain.populate(
            cfg.username, cfg.password, domain_accounts(domain.netbios, cfg.accounts, cfg.groups)
        )

    def _join_domain(self, domain: LabDomain) -> None:
        """The hosts become domain computers (SPNs, keys); their directory is the DC's."""
        domain.register(self.runtimes)
        directory = domain.directory(self.directory, self.config.username, self.config.password)
        self.directory = directory
        for rt in self.runtimes.values():
            _rebase_domain_sids(rt.host, directory)

    def _build_hosts(self) -> None:
        cfg = self.config
        profiles = assign_profiles(cfg.hosts, parse_mix(cfg.mix))
        shares = parse_languages(cfg.languages)
        languages = [lang for lang, _ in shares]
        weights = [w for _, w in shares]
        for i, profile in enumerate(profiles, start=1):
            name = host_name(i)
            language = random.Random(f"lang:{cfg.seed}:{i}").choices(languages, weights)[0]
            path = host_file(self.state_dir, name)
            host: Host | None = None
            if path.exists() and not cfg.fresh:
                try:
                    saved = Host.from_json(read_json(path))
                except (ValueError, KeyError, TypeError, AssertionError):
                    saved = None
                if saved is not None and saved.profile == profile.name:
                    host = saved
            if host is None:
                host = seed_host(i, profile, language, cfg.seed)
                write_json(path, host.to_json())
            port = 0 if cfg.base_port is None else cfg.base_port + i - 1
            self.runtimes[name] = HostRuntime(host, port)

    async def _open_listener(self, rt: HostRuntime) -> None:
        """Listen on the host's port, or only hold it (bound, not listening) when unreachable:
        connecting then fails with "connection refused", as with a host whose WinRM is off."""
        assert self._runner is not None
        if rt.placeholder is not None:
            sock = rt.placeholder
            rt.placeholder = None
        else:
            try:
                sock = _bind(rt.port)
            except OSError as exc:
                raise OSError(
                    f"lab host {rt.host.name}: cannot bind 127.0.0.1:{rt.port}: {exc.strerror}; "
                    "choose another --base-port or leave it out to let the system pick ports"
                ) from exc
        if rt.port == 0 or rt.port not in self.by_port:
            rt.port = sock.getsockname()[1]
            self.by_port[rt.port] = rt
        if rt.faults.unreachable:
            rt.placeholder = sock
            return
        sock.listen(512)
        rt.site = web.SockSite(self._runner, sock, ssl_context=self._ssl, backlog=512)
        await rt.site.start()

    async def _close_listener(self, rt: HostRuntime) -> None:
        if rt.site is not None:
            await rt.site.stop()
            rt.site = None
        rt.placeholder = _bind(rt.port)

    def _write_marker(self) -> None:
        cfg = self.config
        write_json(
            marker_file(self.state_dir),
            {
                "pid": os.getpid(),
                "started": self.started,
                "scheme": cfg.scheme,
                "auth": list(cfg.auth),
                "username": cfg.username,
                "ca_bundle": str(self.ca_bundle) if self.ca_bundle else None,
                "faults_file": str(self.faults_path),
                "admin_port": self.admin_port,
                "admin_token": self.admin_token,
                "hosts": self.ports,
                "domain": self.domain.to_json() if self.domain else None,
                "refuse_ntlm": cfg.refuse_ntlm,
            },
            0o600,
        )

    # ------------------------------------------------------------ faults

    def _reload_faults(self, initial: bool = False) -> bool:
        try:
            mtime: float | None = self.faults_path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if not initial and mtime == self._faults_mtime:
            return False
        self._faults_mtime = mtime
        try:
            plan = load_faults(self.faults_path, list(self.runtimes))
        except FaultsError as exc:
            if initial and self.config.faults_path is not None:
                raise
            # A running lab keeps its faults when the file is broken; lab.json tells why.
            self.faults_error = str(exc)
            return False
        self.faults_error = None
        self.plan = plan
        self.directory.broken_trusts = set(plan.broken_trusts)
        self.faults_generation += 1
        for name, rt in self.runtimes.items():
            rt.faults = plan.for_host(name)
        return True

    async def _apply_reachability(self) -> None:
        for rt in self.runtimes.values():
            if rt.faults.unreachable and rt.site is not None:
                await self._close_listener(rt)
            elif not rt.faults.unreachable and rt.site is None and rt.placeholder is not None:
                await self._open_listener(rt)

    async def _watch_faults(self) -> None:
        while True:
            await asyncio.sleep(FAULTS_POLL_SECONDS)
            if self._reload_faults():
                await self._apply_reachability()

    # ------------------------------------------------------------ WinRM requests

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None and self.auth is not None
        rt = self.by_port.get(transport.get_extra_info("sockname")[1])
        if rt is None:
            return web.Response(status=404)
        rt.requests += 1
        self.total_requests += 1
        conn = self._conns.get(transport)
        if conn is None:
            conn = self._conns[transport] = ConnectionAuth()
        conn.requests += 1
        faults = rt.faults
        if faults.reset_after is not None and conn.requests > faults.reset_after:
            _reset(transport)
            return web.Response(status=500)
        if faults.hang_after is not None and conn.requests > faults.hang_after:
            await self._closing.wait()
            transport.abort()
            return web.Response(status=500)
        if faults.latency:
            await asyncio.sleep(faults.latency)
        try:
            body = await request.read()
        except ConnectionError as exc:
            # A client killed mid-request (a Ctrl-C'd or SIGKILLed rollout): one line, not
            # aiohttp's traceback per connection (docs/lab.md).
            log.warning("%s: a client dropped its connection mid-request (%s)", rt.host.name, exc)
            return web.Response(status=400)
        try:
            done, token = self.auth.authenticate(
                conn, request.headers.get("Authorization"), faults.auth_refused
            )
        except AuthRefused as exc:
            resp = web.Response(status=401)
            for challenge in exc.challenges:
                resp.headers.add("WWW-Authenticate", challenge)
            return resp
        extra = {"WWW-Authenticate": token} if token else {}
        if not done:
            return web.Response(status=401, headers=extra)
        if conn.service is not None and not self._ticket_for(rt, conn.service):
            # A ticket for another host's SPN: on Windows this host would not hold the key
            # that decrypts it (here one keytab holds every host's): refused the same way.
            conn.context, conn.authenticated, conn.service = None, False, None
            resp = web.Response(status=401)
            for challenge in self.auth.challenges():
                resp.headers.add("WWW-Authenticate", challenge)
            return resp
        content_type = request.headers.get("Content-Type", "")
        encrypted = content_type.startswith("multipart/encrypted")
        if encrypted:
            try:
                body = unwrap(conn.context, body)
            except BadMessage as exc:
                return web.Response(status=400, text=str(exc))
        if not body:
            # The empty request that pypsrp sends to set up encryption over HTTP.
            return web.Response(status=200, headers=extra)
        if conn.allowed is None:
            conn.allowed = self._admitted(rt, conn)
        if conn.allowed:
            status, reply = await self._dispatch(rt, body, request)
        else:
            status, reply = 500, _access_denied(body, rt.host.facts.computer_name)
        if encrypted:
            protocol = encryption_protocol(content_type)
            return web.Response(
                status=status,
                body=wrap(conn.context, reply, protocol),
                headers={**extra, "Content-Type": encrypted_content_type(protocol)},
            )
        return web.Response(
            status=status,
            body=reply,
            headers={**extra, "Content-Type": "application/soap+xml;charset=UTF-8"},
        )

    def _ticket_for(self, rt: HostRuntime, service: str) -> bool:
        """Whether a Kerberos ticket's SPN names this host (its DNS or account name)."""
        if self.domain is None:
            return True
        account = self.domain.host_account(rt.host.name)
        return spn_host(service) in (account.fqdn.lower(), account.account.lower())

    def _admitted(self, rt: HostRuntime, conn: ConnectionAuth) -> bool:
        """WinRM's access check: the default session configuration admits members of the
        host's BUILTIN\\Administrators (learn.microsoft.com, "Authentication constants":
        "By default, the account must be a member of the local Administrators group").

        The login user is admitted (it is the only account NTLM and Basic know, and a domain
        lab makes it a Domain Admin, which every domain host's Administrators holds); another
        account (Kerberos lets any domain user authenticate) must have its SID, or one of its
        groups' (tokenGroups, from the DC), among the host's Administrators members."""
        user = conn.user or self.config.username
        if user.lower() == self.config.username.lower():
            return True
        directory = self.directory
        admins = rt.host.groups.get(ADMINISTRATORS_SID)
        if not isinstance(directory, DomainDirectory) or admins is None:
            return False
        sids = {s.upper() for s in directory.token_sids(user)}
        return any(m.sid.upper() in sids for m in admins.members)

    async def _dispatch(
        self, rt: HostRuntime, body: bytes, request: web.Request
    ) -> tuple[int, bytes]:
        machine = rt.host.facts.computer_name
        try:
            req = wsman.parse_request(body)
        except wsman.WSManRequestError as exc:
            return 500, wsman.fault("", exc.subcode, exc.message, exc.code, machine)
        try:
            if req.action == wsman.ACTION_CREATE:
                return 200, self._create(rt, req, request)
            shell = rt.shells.get(req.shell_id or "")
            if shell is None:
                raise wsman.WSManRequestError(
                    "w:InvalidSelectors",
                    f"The request for the Windows Remote Shell with ShellId {req.shell_id} failed "
                    "because the shell was not found on the server. Possible causes are: the "
                    "specified ShellId is incorrect or the shell no longer exists on the server.",
                    wsman.ERROR_SHELL_NOT_FOUND,
                )
            if req.action == wsman.ACTION_RECEIVE:
                return await self._receive(rt, shell, req, request.transport)
            if req.action == wsman.ACTION_COMMAND:
                return 200, self._command(rt, shell, req)
            if req.action == wsman.ACTION_SEND:
                stream = req.body.find("rsp:Send/rsp:Stream", wsman.NS)
                if stream is None:
                    raise wsman.WSManRequestError("w:SchemaValidationError", "Send without Stream")
                pid = _command_uuid(stream.get("CommandId"))
                self._feed(rt, shell, _b64(stream.text), pid)
                return 200, wsman.empty_response(req.action, req.message_id)
            if req.action == wsman.ACTION_SIGNAL:
                signal = req.body.find("rsp:Signal", wsman.NS)
                pid = _command_uuid(signal.get("CommandId") if signal is not None else None)
                code = (
                    signal.findtext("rsp:Code", "", wsman.NS) if signal is not None else ""
                ).strip()
                if pid is not None:
                    if code == wsman.SIGNAL_PS_CTRL_C:
                        shell.stop_pipeline(pid)
                    else:
                        shell.close_pipeline(pid)
                return 200, wsman.empty_response(req.action, req.message_id)
            if req.action == wsman.ACTION_DELETE:
                shell.close()
                rt.shells.pop(shell.shell_id, None)
                return 200, wsman.empty_response(req.action, req.message_id)
            raise wsman.WSManRequestError(
                "w:ActionNotSupported", f"The action {req.action!r} is not supported by the lab."
            )
        except wsman.WSManRequestError as exc:
            return 500, wsman.fault(req.message_id, exc.subcode, exc.message, exc.code, machine)
        except PSRPCoreError as exc:
            return 500, wsman.fault(
                req.message_id, "w:InternalError", f"PSRP error: {exc}", None, machine
            )

    def _create(self, rt: HostRuntime, req: wsman.Request, request: web.Request) -> bytes:
        shell_el = req.body.find("rsp:Shell", wsman.NS)
        creation = req.body.find("rsp:Shell/pwsh:creationXml", wsman.NS)
        if shell_el is None or creation is None:
            raise wsman.WSManRequestError(
                "w:SchemaValidationError",
                "Create without rsp:Shell/creationXml: not a PowerShell shell",
            )
        shell_id = (shell_el.get("ShellId") or str(uuid.uuid4())).upper()
        shell = Shell(shell_id, time.monotonic() + rt.faults.slow_open)
        rt.shells[shell_id] = shell
        rt.sessions += 1
        self._feed(rt, shell, _b64(creation.text), None)
        scheme = self.config.scheme
        peer = request.transport.get_extra_info("peername") if request.transport else None
        conn = self._conns.get(request.transport) if request.transport else None
        owner = (conn.user if conn else None) or self.config.username
        content_type = request.headers.get("Content-Type", "")
        rt.session_log.append(
            {
                "time": time.time(),
                "shell_id": shell_id,
                "mechanism": str(conn.mechanism) if conn and conn.mechanism else None,
                "user": owner,
                # WinRM message encryption's protocol over HTTP (None: TLS, or Basic).
                "encryption": encryption_protocol(content_type)
                if content_type.startswith("multipart/encrypted")
                else None,
            }
        )
        return wsman.create_response(
            req.message_id,
            shell_id,
            f"{scheme}://127.0.0.1:{rt.port}/wsman",
            owner,
            peer[0] if peer else "127.0.0.1",
        )

    def _command(self, rt: HostRuntime, shell: Shell, req: wsman.Request) -> bytes:
        line = req.body.find("rsp:CommandLine", wsman.NS)
        if line is None:
            raise wsman.WSManRequestError("w:SchemaValidationError", "Command without CommandLine")
        pid = _command_uuid(line.get("CommandId")) or uuid.uuid4()
        shell.new_pipeline(pid)
        self._feed(rt, shell, _b64(line.findtext("rsp:Arguments", "", wsman.NS)), pid)
        return wsman.command_response(req.message_id, str(pid).upper())

    def _feed(self, rt: HostRuntime, shell: Shell, data: bytes, pid: uuid.UUID | None) -> None:
        mutated = False

        def runner(commands: Commands) -> list[dict[str, Any]]:
            nonlocal mutated
            rt.pipelines += 1
            self._log(rt, commands)
            result = run_pipeline(
                rt.host,
                self.directory,
                commands,
                rt.faults.deny,
                rt.faults.trust_failure,
                rt.faults.missing_groups,
                rt.faults.local_policy_modify_state,
            )
            mutated = mutated or result.mutated
            return result.outputs

        shell.feed(data, pid, runner)
        if mutated:
            write_json(host_file(self.state_dir, rt.host.name), rt.host.to_json())

    def _log(self, rt: HostRuntime, commands: Commands) -> None:
        entries = []
        for text, is_script, params in commands:
            # Scripts repeat across hosts: keep one copy of each text (bounded).
            shared = self._texts.get(text)
            if shared is None and len(self._texts) < 1000:
                shared = self._texts[text] = text
            entries.append(
                {
                    "script": shared if shared is not None else text,
                    "is_script": is_script,
                    "parameters": [(name, to_plain(value)) for name, value in params],
                }
            )
        rt.log.append({"time": time.time(), "commands": entries})

    async def _receive(
        self, rt: HostRuntime, shell: Shell, req: wsman.Request, transport: Any
    ) -> tuple[int, bytes]:
        stream = req.body.find("rsp:Receive/rsp:DesiredStream", wsman.NS)
        pid = _command_uuid(stream.get("CommandId") if stream is not None else None)
        command_id = str(pid).upper() if pid else None
        if pid is not None and pid not in shell.pipelines:
            raise wsman.WSManRequestError(
                "w:InvalidParameter", f"The command {command_id} does not exist in this shell."
            )
        replayed = shell.replay(pid, req.message_id)
        if replayed is not None:
            chunks, done = replayed
            return 200, wsman.receive_response(req.message_id, chunks, command_id, done)
        deadline = time.monotonic() + req.operation_timeout
        while True:
            if rt.shells.get(shell.shell_id) is not shell or self._closing.is_set():
                raise wsman.WSManRequestError(
                    "w:InvalidSelectors", "The shell was closed.", wsman.ERROR_SHELL_NOT_FOUND
                )
            if transport is None or transport.is_closing():
                # The client is gone (it timed out and will resend): take nothing for it.
                return 500, wsman.timeout_fault(req.message_id, rt.host.facts.computer_name)
            now = time.monotonic()
            if shell.ready():
                chunks, done = shell.take(pid)
                if chunks or done:
                    shell.answer(pid, req.message_id, chunks, done)
                    info = shell.pipelines.get(pid) if pid is not None else None
                    if rt.faults.stall_receive and chunks and info is not None and not info.stalled:
                        info.stalled = True
                        await asyncio.sleep(rt.faults.stall_receive)
                    return 200, wsman.receive_response(req.message_id, chunks, command_id, done)
                wait_until = deadline
            else:
                wait_until = min(deadline, shell.ready_at)
            if now >= deadline:
                # [MS-WSMV] 3.1.4.14: an empty Receive is held until OperationTimeout.
                return 500, wsman.timeout_fault(req.message_id, rt.host.facts.computer_name)
            shell.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shell.wakeup.wait(), max(0.0, wait_until - now))

    # ------------------------------------------------------------ admin endpoint

    def _admin_ok(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("X-Lab-Token", ""), self.admin_token)

    def _admin_host(self, request: web.Request) -> HostRuntime | web.StreamResponse:
        """The host an admin call names, or the response refusing it (403 without the token,
        404 for an unknown host)."""
        if not self._admin_ok(request):
            return web.Response(status=403)
        rt = self.runtimes.get(request.match_info["host"])
        if rt is None:
            return web.json_response({"error": "no such host"}, status=404)
        return rt

    async def _admin_state(self, request: web.Request) -> web.StreamResponse:
        rt = self._admin_host(request)
        if isinstance(rt, web.StreamResponse):
            return rt
        return web.json_response(self.host_view(rt.host.name))

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        if not self._admin_ok(request):
            return web.Response(status=403)
        return web.json_response(self.stats())

    async def _admin_reload(self, request: web.Request) -> web.StreamResponse:
        if not self._admin_ok(request):
            return web.Response(status=403)
        self._faults_mtime = -1.0  # force a re-read even within one mtime tick
        self._reload_faults()
        await self._apply_reachability()
        return web.json_response({"generation": self.faults_generation, "error": self.faults_error})

    async def _admin_offer(self, request: web.Request) -> web.StreamResponse:
        """A simulated Offer Remote Assistance to an XP / 2003 host: helpsvc checks the expert
        and caches the helpers list in RAUnsolicit's default value (docs/lab.md)."""
        rt = self._admin_host(request)
        if isinstance(rt, web.StreamResponse):
            return rt
        host = rt.host
        trust = rt.faults.trust_failure
        domain = self._domain_sid(host.facts.domain) if host.facts.part_of_domain else None
        try:
            result = helpsvc_offer(
                host, lambda a: resolve_account(host, self.directory, a, trust), domain
            )
        except NotLegacy as exc:
            return web.json_response({"error": str(exc)}, status=409)
        write_json(host_file(self.state_dir, host.name), host.to_json())
        return web.json_response(result.to_json())

    async def _admin_gpupdate(self, request: web.Request) -> web.StreamResponse:
        """A Group Policy refresh on the host (gpupdate /force): the GPOs that apply write their
        settings over raorch's values (docs/lab.md, "Group Policy")."""
        rt = self._admin_host(request)
        if isinstance(rt, web.StreamResponse):
            return rt
        host = rt.host
        trust = rt.faults.trust_failure
        changed = gpupdate(host, lambda a: resolve_account(host, self.directory, a, trust))
        write_json(host_file(self.state_dir, host.name), host.to_json())
        return web.json_response({"host": host.name, "changed": changed})

    async def _admin_account(self, request: web.Request) -> web.StreamResponse:
        """How the host resolves ``?name=DOMAIN\\name``: ``{"host", "account", "mapped",
        "sid", "error"}``, and in a domain lab what the DC holds for it (``directory``: kind
        user / group / computer, ``disabled``), which the contract's ResolveAccount does not
        carry."""
        rt = self._admin_host(request)
        if isinstance(rt, web.StreamResponse):
            return rt
        account = request.query.get("name", "")
        host = rt.host
        answer: dict[str, Any] = {"host": host.name, "account": account}
        result = run_pipeline(
            host,
            self.directory,
            [
                (
                    MARKER,
                    True,
                    [("Operations", [{"Op": "ResolveAccount", "Account": account}])],
                )
            ],
            (),
            rt.faults.trust_failure,
        ).outputs[0]
        answer["mapped"] = bool(result["Ok"])
        answer["sid"] = result.get("Sid")
        answer["error"] = result.get("ErrorKind")
        info = None
        if isinstance(self.directory, DomainDirectory) and result["Ok"]:
            info = self.directory.account_info(account)
        answer["directory"] = info.to_json() if info is not None else None
        return web.json_response(answer)

    def _domain_sid(self, domain: str) -> str:
        directory = self.directory
        if isinstance(directory, DomainDirectory):
            real = directory.domain_sid_of(domain)
            if real is not None:
                return real
        return domain_sid(domain)

    def host_view(self, name: str) -> dict[str, Any]:
        rt = self.runtimes[name]
        view = rt.host.to_json()
        view["port"] = rt.port
        view["runtime"] = {
            "requests": rt.requests,
            "sessions": rt.sessions,
            "open_shells": len(rt.shells),
            "pipelines": rt.pipelines,
            "faults": _faults_json(rt.faults),
            "log": list(rt.log),
            # Per session: who opened it and what authenticated them (kerberos, ntlm,
            # negotiate-kerberos, negotiate-ntlm, basic).
            "session_log": list(rt.session_log),
        }
        return view

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "total_requests": self.total_requests,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "process_time": time.process_time(),
            "sessions": sum(rt.sessions for rt in self.runtimes.values()),
            "pipelines": sum(rt.pipelines for rt in self.runtimes.values()),
            "open_shells": sum(len(rt.shells) for rt in self.runtimes.values()),
            "faults_generation": self.faults_generation,
            "faults_error": self.faults_error,
            "requests": {n: rt.requests for n, rt in self.runtimes.items()},
            "ldap_queries": self.directory.ldap.queries
            if isinstance(self.directory, DomainDirectory)
            else 0,
            "ldap_cache_hits": self.directory.ldap.hits
            if isinstance(self.directory, DomainDirectory)
            else 0,
        }


# ---------------------------------------------------------------- helpers


def raise_fd_limit() -> None:
    """Thousands of listeners and connections need file descriptors: soft limit to hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def _access_denied(body: bytes, machine: str) -> bytes:
    """The fault WinRM answers an account its session configuration does not admit."""
    try:
        message_id = wsman.parse_request(body).message_id
    except wsman.WSManRequestError:
        message_id = ""
    return wsman.fault(
        message_id, "w:InternalError", ACCESS_DENIED_TEXT, ACCESS_DENIED_CODE, machine
    )


def _rebase_domain_sids(host: Host, directory: DomainDirectory) -> None:
    """Seeded members of the DC's domain (CORP\\Domain Admins in Administrators, the helpers of
    the compliant hosts) carry the emulated directory's SIDs: give them the DC's (by name;
    an account the DC does not hold keeps its SID, an orphan as on Windows)."""
    emulated = domain_sid(directory.netbios) + "-"
    for group in host.groups.values():
        for i, member in enumerate(group.members):
            if member.sid.upper().startswith(emulated.upper()):
                hit = directory.lookup(member.name)
                if hit is not None:
                    group.members[i] = Member(hit[1], hit[0])


def _reset(transport: Any) -> None:
    """Close with a TCP RST (SO_LINGER 0), which the client sees as "connection reset"."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except binascii.Error:
        raise wsman.WSManRequestError("w:SchemaValidationError", "invalid base64 data") from None


def _command_uuid(text: str | None) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise wsman.WSManRequestError("w:InvalidParameter", f"bad CommandId {text!r}") from None


def _faults_json(f: HostFaults) -> dict[str, Any]:
    return {
        "unreachable": f.unreachable,
        "auth_refused": f.auth_refused,
        "latency_ms": f.latency * 1000,
        "hang_after": f.hang_after,
        "reset_after": f.reset_after,
        "slow_open_ms": f.slow_open * 1000,
        "stall_receive_ms": f.stall_receive * 1000,
        "trust_failure": f.trust_failure,
        "missing_groups": sorted(f.missing_groups),
        "local_policy_modify_state": f.local_policy_modify_state,
        "deny": [
            {
                "op": d.op,
                "key": d.key,
                "group": d.group,
                "after_write": d.after_write,
                "after_create_key": d.after_create_key,
            }
            for d in f.deny
        ],
    }


def to_plain(value: Any) -> Any:
    """PSRP values as JSON-able Python (bytes as hex), for the pipeline log."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value if not isinstance(value, str) else str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return str(value)


async def serve(
    config: LabConfig,
    stop: asyncio.Event,
    on_ready: Callable[[LabServer], None] | None = None,
) -> None:
    """Run a lab until ``stop`` is set."""
    server = LabServer(config)
    try:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
    finally:
        await server.stop()


__all__ = ["LabConfig", "LabServer", "serve"]
