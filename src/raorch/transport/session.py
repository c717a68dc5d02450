"""One WinRM session to one host: open a RunspacePool, run batches in it, close it.

pypsrp 0.9 is synchronous; one ``WSMan`` holds one requests session and one authentication
context, and sharing it between threads breaks NTLM (shared winrm-notes.md: 200 of 200
sessions failed). So a ``HostSession`` owns its own ``WSMan`` and refuses to be used by two
threads at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from pypsrp.complex_objects import Command, CommandParameter, PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from raorch.models.inventory import Target
from raorch.models.outcomes import Stage
from raorch.models.remote import Operation, OpResult
from raorch.transport import kerberos
from raorch.transport.classify import AuthTrace, classify, error_record_text, scrub
from raorch.transport.clixml import runspace_pool
from raorch.transport.endpoint import Endpoint, endpoint_for
from raorch.transport.errors import TransportError
from raorch.transport.script import batch_script
from raorch.transport.wire import from_wire, op_name, to_wire

# How many operation timeouts one pipeline may take before the host counts as not answering.
PIPELINE_TIMEOUTS = 3

# After an abort (the host's deadline passed), closing the shell gets this long per request: a
# host that answers has its shell deleted, a hanging one costs seconds, not read timeouts.
ABORT_CLOSE_TIMEOUT = 3

# WSMan.__init__ (pypsrp 0.9.1) calls ElementTree.register_namespace, which deletes and
# re-inserts entries of a module-global dict while iterating a copy of it: two threads doing it
# at once fail with "RuntimeError: dictionary keys changed during iteration" (seen at 1,000
# hosts). Construction does no I/O, so serializing it costs nothing.
_WSMAN_CONSTRUCTION = threading.Lock()

log = logging.getLogger(__name__)

# A WWW-Authenticate value that carries a token ("Negotiate <base64>"), not just a scheme.
_AUTH_TOKEN = re.compile(r"(?:Negotiate|Kerberos|NTLM)\s+[A-Za-z0-9+/=]", re.IGNORECASE)


class HostSession:
    """One WinRM session to one host: one WSMan, one RunspacePool, one thread at a time.

    ``with HostSession(target, password) as s: results = s.run(ops, Stage.SNAPSHOT)``.
    Opening retries, with exponential backoff, only what may pass (refused or reset
    connections, timeouts, HTTP 5xx); refused credentials and bad settings fail at once.
    """

    def __init__(
        self, target: Target, password: str, *, retries: int = 2, backoff: float = 0.5
    ) -> None:
        self.target = target
        self.retries = retries
        self.backoff = backoff
        self.requests = 0  # HTTP requests sent, handshakes included (for benchmarks)
        self.attempts = 0  # how many times opening was tried
        self._password = password
        self._wsman: WSMan | None = None
        self._pool: RunspacePool | None = None
        self._endpoint: Endpoint | None = None
        self._busy = threading.Lock()
        # abort() comes from another thread: the urllib3 connections this session opened, so
        # that it can shut their sockets down under a thread blocked reading them.
        self._aborted = threading.Event()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        # What the host's authentication answers showed (classify: NTLM refused...).
        self._offered = ""
        self._host_tokens = 0

    def __repr__(self) -> str:
        # Never the password.
        state = "open" if self._pool is not None else "closed"
        return f"HostSession(host={self.target.name!r}, address={self.target.address!r}, {state})"

    # ------------------------------------------------------------ abort

    def abort(self) -> None:
        """End this session's I/O now, from any thread (the engine calls it when the host's
        deadline passes). Every socket the session opened is shut down, so a thread blocked in
        a read returns at once with an error instead of waiting for pypsrp's read timeout; no
        new request starts (retries and the pipeline poll look at the flag); closing the shell
        afterwards gets ``ABORT_CLOSE_TIMEOUT`` per request. Never raises."""
        self._aborted.set()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                # shutdown, not close: close() leaves a recv() in another thread blocked on
                # Linux; shutdown wakes it with EOF.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def _aborted_error(self, stage: Stage | None, step: str) -> TransportError:
        return TransportError(
            self.target.name,
            stage or Stage.CONNECT,
            f"{step}: stopped (the host's deadline passed or the run was aborted)",
            transient=False,
            hint="raise --deadline if the host is only slow",
        )

    # ------------------------------------------------------------ open / close

    def __enter__(self) -> HostSession:
        with self._exclusive():
            endpoint = endpoint_for(self.target)
            self._endpoint = endpoint
            attempt = 0
            while True:
                self.attempts += 1
                try:
                    self._open(endpoint)
                    return self
                except Exception as exc:  # every failure is classified, none escapes raw
                    trace = self._auth_trace()
                    self._discard()
                    error = self._classify(exc, None, "opening the session", trace)
                if self.aborted:
                    raise self._aborted_error(None, "opening the session")
                if not error.transient or attempt >= self.retries:
                    raise error
                log.debug("host %s: %s; retrying", self.target.name, error)
                time.sleep(self.backoff * (2**attempt))
                attempt += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The host's result is already known here; a failing close must not replace it.
        with self._exclusive():
            self._discard()

    def _open(self, endpoint: Endpoint) -> None:
        self._offered, self._host_tokens = "", 0
        kwargs = endpoint.wsman_kwargs()
        password: str | None = self._password
        if self.target.connection.auth.kerberos:
            if kerberos.use_ntlm(self.target, self._password):
                # auth: negotiate for an account whose Kerberos the run's logon found
                # unavailable: NTLM at once, instead of a failing KDC exchange per host.
                kwargs["auth"] = "ntlm"
            else:
                kwargs["username"], password = kerberos.session_credentials(
                    self.target, self._password
                )
        with _WSMAN_CONSTRUCTION:
            wsman = WSMan(password=password, **kwargs)
        self._wsman = wsman
        self._count_requests(wsman)
        pool = runspace_pool(wsman)
        self._pool = pool
        pool.open()

    def _discard(self) -> None:
        pool, wsman = self._pool, self._wsman
        self._pool = None
        self._wsman = None
        if self.aborted and wsman is not None:
            # The shell is still worth deleting on a host that answers (it holds a WinRM
            # quota slot), but a hanging host must not hold this thread for read timeouts.
            transport = wsman.transport
            transport.connection_timeout = min(transport.connection_timeout, ABORT_CLOSE_TIMEOUT)
            transport.read_timeout = min(transport.read_timeout, ABORT_CLOSE_TIMEOUT)
        try:
            # Deletes the shell on the host; a shell that was never created is skipped by
            # pypsrp itself (WinRS.close checks ``opened``).
            if pool is not None:
                pool.close()
        except Exception as exc:  # see __exit__
            log.debug(
                "host %s: closing the session failed: %s",
                self.target.name,
                scrub(str(exc), self._password),
            )
        try:
            if wsman is not None:
                wsman.close()
        except Exception as exc:  # see __exit__
            log.debug(
                "host %s: closing the connection failed: %s",
                self.target.name,
                scrub(str(exc), self._password),
            )

    def _count_requests(self, wsman: WSMan) -> None:
        """Count HTTP requests, authentication round trips included, by wrapping the send of
        the requests adapters. pypsrp builds its requests session lazily on the first send
        (``_TransportHTTP.send``); building it here, the same way, lets the adapters be
        wrapped first. Best effort: without those internals, nothing is counted."""
        transport = getattr(wsman, "transport", None)
        build = getattr(transport, "_build_session", None)
        if transport is None or build is None or getattr(transport, "session", None) is not None:
            return
        session = build()
        # pypsrp read the environment's proxy, NO_PROXY and CA bundle settings for this host
        # into the session just now (``_build_session``); left trusting the environment,
        # requests would read os.environ again on every request (``resolve_proxies``), ~5%
        # of the controller's CPU per host for the same answer (docs/benchmarks.md).
        session.trust_env = False
        transport.session = session
        for adapter in session.adapters.values():
            adapter.send = self._counting(adapter.send)
            self._track_connections(adapter.poolmanager)

    def _track_connections(self, manager: Any) -> None:
        """Remember every urllib3 connection this session's pools create (for ``abort``):
        ``PoolManager._new_pool`` and ``HTTPConnectionPool._new_conn`` are wrapped on these
        instances only (urllib3 1.26 and 2.x have both)."""
        new_pool = getattr(manager, "_new_pool", None)
        if new_pool is None:
            return

        def tracked_pool(*args: Any, **kwargs: Any) -> Any:
            pool = new_pool(*args, **kwargs)
            new_conn = getattr(pool, "_new_conn", None)
            if new_conn is not None:

                def tracked_conn() -> Any:
                    connection = new_conn()
                    with self._connections_lock:
                        self._connections.append(connection)
                    return connection

                pool._new_conn = tracked_conn
            return pool

        manager._new_pool = tracked_pool

    def _counting(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            response = send(*args, **kwargs)
            headers = getattr(response, "headers", None)
            offered = headers.get("WWW-Authenticate", "") if headers is not None else ""
            if getattr(response, "status_code", 0) == 401:
                self._offered = offered
            if _AUTH_TOKEN.search(offered):
                self._host_tokens += 1
            return response

        return counted

    def _auth_trace(self) -> AuthTrace:
        """What the authentication exchange showed, read before the session is discarded."""
        protocol: str | None = None
        transport = getattr(self._wsman, "transport", None)
        auth = getattr(getattr(transport, "session", None), "auth", None)
        for context in (getattr(auth, "contexts", None) or {}).values():
            with contextlib.suppress(Exception):  # a context that never started
                protocol = context.negotiated_protocol
        return AuthTrace(
            auth=self.target.connection.auth,
            offered=self._offered,
            protocol=protocol,
            host_answered=self._host_tokens > 0,
        )

    # ------------------------------------------------------------ run

    def run(self, operations: Sequence[Operation], stage: Stage) -> list[OpResult]:
        """Run ``operations`` as one pipeline; one result per operation, in order.

        A failing operation comes back as ``OpResult(ok=False)``; ``TransportError`` (with
        ``stage``) means the pipeline itself failed and no result is known.
        """
        with self._exclusive():
            pool = self._pool
            if pool is None:
                raise RuntimeError("HostSession.run needs an open session: use it in a `with`")
            if not operations:
                return []
            step = f"running {len(operations)} operations ({_summary(operations)})"
            ps = PowerShell(pool)
            # Local scope: the batch's functions and variables stay in this pipeline instead
            # of lingering in the pool's global scope for the next one. (``add_script``, with
            # a command pypsrp does not deep-copy.)
            command = _SharedCommand(
                batch_script(),
                protocol_version=pool.protocol_version or "",
                is_script=True,
                use_local_scope=True,
            )
            command.args.append(
                CommandParameter(name="Operations", value=[to_wire(op) for op in operations])
            )
            ps.commands.append(command)
            try:
                output = self._invoke(ps, stage, step)
            except TransportError:
                raise
            except Exception as exc:  # every failure is classified, none escapes raw
                raise self._classify(exc, stage, step) from None
            if ps.had_errors or ps.state != PSInvocationState.COMPLETED:
                records = [error_record_text(r, self._password) for r in ps.streams.error]
                why = "; ".join(r for r in records if r) or f"pipeline state {ps.state}"
                raise TransportError(
                    self.target.name,
                    stage,
                    f"{step}: the batch failed on the host: {why}",
                    transient=False,
                    hint="this is a raorch bug or a host that does not run raorch's script; "
                    "please report it with the rollout log",
                )
            if len(output) != len(operations):
                raise TransportError(
                    self.target.name,
                    stage,
                    f"{step}: the host returned {len(output)} results for "
                    f"{len(operations)} operations",
                    transient=False,
                    hint="the host's PowerShell wrote unexpected output; please report it with "
                    "the rollout log",
                )
            return [from_wire(op, obj) for op, obj in zip(operations, output, strict=True)]

    def _invoke(self, ps: PowerShell, stage: Stage, step: str) -> list[Any]:
        """``ps.invoke()`` with an end: pypsrp polls a running pipeline for ever, and a host
        that accepted the command but never reports its end (a lost reply, a wedged WinRM
        service) would hold this thread, and a `plan` or `verify` waiting on it, with no
        limit. Each Receive is a long poll of at most the operation timeout; the pipeline as
        a whole gets ``PIPELINE_TIMEOUTS`` of them."""
        limit = self.target.connection.operation_timeout * PIPELINE_TIMEOUTS
        ends = time.monotonic() + limit
        ps.begin_invoke()
        while ps.state == PSInvocationState.RUNNING:
            if self.aborted:
                raise self._aborted_error(stage, step)
            if time.monotonic() > ends:
                raise TransportError(
                    self.target.name,
                    stage,
                    f"{step}: the host accepted the pipeline but reported no end within "
                    f"{limit:g} s",
                    transient=True,
                    hint="check the WinRM service on the host; raise operation_timeout if the "
                    "host is only slow",
                )
            ps.poll_invoke()
        return list(ps.output)

    # ------------------------------------------------------------ helpers

    def _classify(
        self,
        exc: BaseException,
        stage: Stage | None,
        step: str,
        trace: AuthTrace | None = None,
    ) -> TransportError:
        endpoint = self._endpoint
        url = endpoint.url if endpoint is not None else self.target.address
        return classify(
            exc,
            host=self.target.name,
            url=url,
            stage=stage,
            step=step,
            secret=self._password,
            target=self.target,
            account=kerberos.account_of(self.target, self._password),
            trace=trace,
        )

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self._busy, self.target.name)


class _SharedCommand(Command):
    """A pipeline command that pypsrp does not copy.

    pypsrp 0.9.1 deep-copies every command of a pipeline, twice, when it writes the
    CreatePipeline message (complex_objects.py, ``_get_statements``, so that lxml parents are
    not shared): with the Operations parameter, ~2,000 ``deepcopy`` calls per pipeline, 4% of
    the controller's CPU per host (py-spy, docs/benchmarks.md). The command is not changed
    after it is built, and ElementTree elements are made afresh on every write, so the copy
    buys nothing here.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedCommand:
        return self


class _Exclusive:
    """Refuses a second thread instead of letting two share one WSMan."""

    def __init__(self, lock: threading.Lock, host: str) -> None:
        self._lock = lock
        self._host = host

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"HostSession for {self._host} used by two threads at once")

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def _summary(operations: Sequence[Operation]) -> str:
    names: dict[str, int] = {}
    for op in operations:
        names[op_name(op)] = names.get(op_name(op), 0) + 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items())
