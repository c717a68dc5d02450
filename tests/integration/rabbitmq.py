"""A real RabbitMQ for the tests (Debian's rabbitmq-server), on loopback, in a temporary
directory, stopped by its own process ids.

Debian's wrapper drops to the ``rabbitmq`` user, so the directory is that user's. The node
has its own name, its own ports (AMQP, Erlang distribution, and its own epmd on a port of its
own, so that stopping it never touches another node's epmd), all on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVER = "rabbitmq-server"
INSTALL = "apt-get install rabbitmq-server"
START_WAIT = 60.0  # seconds: it listens after ~10 s on this machine; a bound, not a timing


def missing() -> str | None:
    """Why RabbitMQ cannot be started here, or None."""
    if shutil.which(SERVER) is None or shutil.which("rabbitmqctl") is None:
        return f"RabbitMQ is not installed ({INSTALL})"
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return f"the rabbitmq user is missing ({INSTALL})"
    if os.geteuid() != 0:
        return "starting Debian's rabbitmq-server in a temporary directory needs root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RabbitMQ:
    directory: Path
    node: str
    port: int
    epmd_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl -n NODE ARGS`` (e.g. ``trace_on``, ``list_queues``).

        The CLI is an Erlang node of its own: it registers a random name with the node's epmd
        and opens a distribution port. Once, in a CI run that shared the machine with a
        10,000-host benchmark, that start failed ("Distribution failed ... nodistribution")
        while the broker itself was up: such a failure of the CLI's own start is tried again
        (up to three times), any other failure is raised at once."""
        for attempt in range(3):
            done = subprocess.run(
                ["rabbitmqctl", "-n", self.node, *args],
                env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode == 0:
                return done.stdout
            text = done.stderr or done.stdout
            if "Distribution failed" not in text or attempt == 2:
                break
            time.sleep(1.0 + attempt)
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {text}")

    def _vm_pid(self) -> int | None:
        """The Erlang VM's process id (its pid file): the wrapper drops to the rabbitmq user
        in a session of its own, so the VM is not in the wrapper's process group."""
        try:
            return int((self.directory / "mnesia" / f"{self.node}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        vm = self._vm_pid()
        with contextlib.suppress(Exception):
            self.ctl("stop")  # returns when the node has stopped
        if vm is not None:
            deadline = time.monotonic() + 30
            while _alive(vm) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(vm):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(vm, signal.SIGKILL)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Our own epmd (its own port): asked to stop by that port, never by name.
        subprocess.run(
            ["epmd", "-port", str(self.epmd_port), "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead too; the VM is not our child (the wrapper's).
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _env(directory: Path, node: str, port: int, epmd_port: int) -> dict[str, str]:
    return {
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(directory / "mnesia" / "feature_flags"),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


def start() -> RabbitMQ:
    directory = Path(tempfile.mkdtemp(prefix="raorch-rabbitmq-"))
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    node = f"raorch{os.getpid()}x{port}@localhost"
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\n"
        "loopback_users = none\n"
        # A test machine's disk may be nearly full: the default (50 MB) would block publishers.
        "disk_free_limit.absolute = 1MB\n",
        encoding="utf-8",
    )
    (directory / "enabled_plugins").write_text("[].\n", encoding="utf-8")
    for sub in ("mnesia", "log"):
        (directory / sub).mkdir()
    user = pwd.getpwnam("rabbitmq")
    for path in (directory, *directory.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    env = {
        **os.environ,
        **_env(directory, node, port, epmd_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    log = (directory / "server.out").open("wb")
    process = subprocess.Popen(
        [SERVER],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as one, by its id
    )
    log.close()
    broker = RabbitMQ(directory, node, port, epmd_port, process)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = (directory / "server.out").read_text(errors="replace")[-2000:]
            broker.stop()
            raise RuntimeError(f"rabbitmq-server exited ({process.returncode}): {text}")
        listening = False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            listening = True
        if listening:
            # The port opens before the broker has booted every part of itself.
            try:
                broker.ctl("await_startup", "--timeout", str(int(START_WAIT)))
            except BaseException:
                broker.stop()
                raise
            return broker
        time.sleep(0.25)
    broker.stop()
    raise RuntimeError(f"rabbitmq-server did not listen on 127.0.0.1:{port} in {START_WAIT} s")
