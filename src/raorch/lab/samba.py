"""A real Active Directory domain controller for the lab: Samba's AD DC (Debian's
``samba-ad-dc``), provisioned into a private directory and served on the loopback interface.

The emulated hosts stay Python, but the domain they belong to is real: a Kerberos KDC (port 88)
and LDAP (389, 636) that issue real tickets and hold real accounts (objectSid, user or group,
disabled). Nothing outside the state directory is touched: no /etc/krb5.conf, no DNS (the
domain is provisioned with ``--dns-backend=NONE``), so the krb5.conf that clients need is
written here and named by ``KRB5_CONFIG``.

Samba binds fixed ports (88, 389, 636, 445, 135) on 127.0.0.1: one DC per machine at a time.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "CORP.RAORCH.TEST"
NETBIOS_DOMAIN = "CORP"
DC_HOST_NAME = "dc1"
KDC_ADDRESS = "127.0.0.1"
# The ports Samba serves, all on loopback; `ready` waits for Kerberos and LDAP.
KDC_PORT = 88
LDAP_PORT = 389
LDAPS_PORT = 636

INSTALL_HINT = (
    "install Samba's AD DC and the Kerberos tools: "
    "`apt-get install samba-ad-dc krb5-user libkrb5-dev` (Debian/Ubuntu), "
    "then `pip install -e '.[dev]'` for the gssapi bindings"
)


class SambaError(RuntimeError):
    """The domain controller could not be provisioned, started or changed; the message says
    which step, what Samba said and what to do."""


def samba_available() -> str | None:
    """None when Samba's AD DC can run here, else what is missing and how to install it."""
    missing = [tool for tool in ("samba", "samba-tool", "kinit") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found: {INSTALL_HINT}"
    return None


def fqdn(host: str, realm: str = REALM) -> str:
    """A lab host's DNS name inside the domain (lab-0001 -> lab-0001.corp.raorch.test)."""
    return f"{host.lower()}.{realm.lower()}"


def krb5_conf_text(realm: str = REALM, kdc: str = KDC_ADDRESS) -> str:
    """A krb5.conf that finds the KDC without DNS. ``rdns = false``: the SPN is built from the
    name the client was given, not from a reverse lookup of 127.0.0.1."""
    return (
        "[libdefaults]\n"
        f"    default_realm = {realm}\n"
        "    dns_lookup_realm = false\n"
        "    dns_lookup_kdc = false\n"
        "    rdns = false\n"
        "    dns_canonicalize_hostname = false\n"
        "    udp_preference_limit = 0\n"
        "[realms]\n"
        f"    {realm} = {{\n        kdc = {kdc}\n        admin_server = {kdc}\n    }}\n"
        "[domain_realm]\n"
        f"    .{realm.lower()} = {realm}\n"
        f"    {realm.lower()} = {realm}\n"
    )


@dataclass
class SambaDC:
    """One domain controller in ``directory`` (created if missing).

    ``provision()`` once (about 5 s), then ``start()`` / ``stop()``. ``admin_password`` is the
    domain Administrator's; it is written to no file but Samba's own database.
    """

    directory: Path
    realm: str = REALM
    domain: str = NETBIOS_DOMAIN
    admin_password: str = field(default_factory=lambda: "Adm1n-" + secrets.token_hex(8))
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def smb_conf(self) -> Path:
        return self.directory / "etc" / "smb.conf"

    @property
    def krb5_conf(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def keytab(self) -> Path:
        """One keytab holding the HTTP/ service keys of every lab host (``add_host``)."""
        return self.directory / "hosts.keytab"

    @property
    def secret_file(self) -> Path:
        """The domain Administrator's password (mode 0600), so that a DC provisioned once can
        be started and changed again by a later process (``attach``)."""
        return self.directory / "admin.secret"

    @property
    def log_file(self) -> Path:
        return self.directory / "samba.log"

    @property
    def ldap_uri(self) -> str:
        return f"ldap://{KDC_ADDRESS}:{LDAP_PORT}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://{KDC_ADDRESS}:{LDAPS_PORT}"

    @property
    def base_dn(self) -> str:
        return ",".join(f"DC={part}" for part in self.realm.lower().split("."))

    @property
    def provisioned(self) -> bool:
        return self.smb_conf.is_file()

    def env(self) -> dict[str, str]:
        """Environment for Kerberos clients and samba-tool: our krb5.conf, nothing of /etc."""
        return {**os.environ, "KRB5_CONFIG": str(self.krb5_conf)}

    # ---------------------------------------------------------------- lifecycle

    def provision(self) -> None:
        missing = samba_available()
        if missing:
            raise SambaError(missing)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._run(
            "samba-tool",
            "domain",
            "provision",
            f"--targetdir={self.directory}",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--adminpass={self.admin_password}",
            f"--host-name={DC_HOST_NAME}",
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
            step="provision the domain",
            conf=False,
        )
        self.krb5_conf.write_text(krb5_conf_text(self.realm))
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.admin_password)

    @classmethod
    def attach(cls, directory: Path) -> SambaDC:
        """The DC provisioned earlier in ``directory`` (by this or another process); running
        or not (``listening``)."""
        dc = cls(directory)
        if not dc.provisioned or not dc.secret_file.is_file():
            raise SambaError(f"no domain controller is provisioned in {directory}")
        dc.admin_password = dc.secret_file.read_text().strip()
        return dc

    @staticmethod
    def listening() -> bool:
        """Whether a DC (this one or any other) serves Kerberos and LDAP on loopback."""
        return all(_listening(port) for port in (KDC_PORT, LDAP_PORT))

    def start(self, timeout: float = 60.0) -> None:
        if not self.provisioned:
            self.provision()
        busy = [port for port in (KDC_PORT, LDAP_PORT) if _listening(port)]
        if busy:
            raise SambaError(
                f"port {busy[0]} on {KDC_ADDRESS} is already in use: another domain controller "
                "(or a lab started with --directory samba) is running on this machine; stop it "
                "first (Samba binds fixed ports, one DC per machine)"
            )
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            ["samba", "-s", str(self.smb_conf), "-i", "--debug-stdout", "-d", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SambaError(
                    f"samba exited with status {self._proc.returncode} while starting; "
                    f"its log is {self.log_file}"
                )
            if all(_listening(port) for port in (KDC_PORT, LDAP_PORT)):
                return
            time.sleep(0.2)
        self.stop()
        raise SambaError(
            f"samba did not listen on {KDC_ADDRESS}:{KDC_PORT} and :{LDAP_PORT} within "
            f"{timeout:.0f} s; its log is {self.log_file}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # samba -i forks worker processes in its session: end them all.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> SambaDC:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- directory content

    def samba_tool(self, *args: str, step: str = "") -> str:
        """Run ``samba-tool ARGS -s smb.conf``; raise SambaError with its output on failure."""
        return self._run("samba-tool", *args, step=step or "samba-tool " + " ".join(args[:2]))

    def add_user(self, name: str, password: str, *, enabled: bool = True) -> None:
        self.samba_tool("user", "create", name, password, step=f"create user {name}")
        if not enabled:
            self.samba_tool("user", "disable", name, step=f"disable user {name}")

    def add_group(self, name: str, members: tuple[str, ...] = ()) -> None:
        self.samba_tool("group", "add", name, step=f"create group {name}")
        if members:
            self.samba_tool(
                "group", "addmembers", name, ",".join(members), step=f"add members to {name}"
            )

    def add_computer(self, name: str, ou: str | None = None) -> None:
        args = ["computer", "create", name]
        if ou:
            args.append(f"--computerou={ou}")
        self.samba_tool(*args, step=f"create computer {name}")

    def add_host(self, name: str) -> str:
        """A lab host as a domain member that serves WinRM: its computer account, a password
        (without one the KDC answers "KDC has no support for encryption type"), the SPN
        ``HTTP/<fqdn>`` and its key in ``keytab``. Returns the SPN."""
        spn = f"HTTP/{fqdn(name, self.realm)}"
        self.add_computer(name)
        self.samba_tool(
            "user",
            "setpassword",
            f"{name}$",
            f"--newpassword={secrets.token_urlsafe(24)}",
            step=f"set the password of computer {name}",
        )
        self.samba_tool("spn", "add", spn, f"{name}$", step=f"add SPN {spn}")
        self.samba_tool(
            "domain",
            "exportkeytab",
            str(self.keytab),
            f"--principal={spn}",
            step=f"export the key of {spn}",
        )
        return spn

    def remove_spn(self, name: str) -> None:
        spn = f"HTTP/{fqdn(name, self.realm)}"
        self.samba_tool("spn", "delete", spn, f"{name}$", step=f"delete SPN {spn}")

    def kinit(self, principal: str, password: str, ccache: Path) -> None:
        """Get a TGT for ``principal`` into the file ``ccache`` (the operator's ``kinit``)."""
        env = {**self.env(), "KRB5CCNAME": f"FILE:{ccache}"}
        done = subprocess.run(
            ["kinit", principal],
            input=(password + "\n").encode(),
            capture_output=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise SambaError(
                f"kinit {principal} failed: {done.stderr.decode(errors='replace').strip()}"
            )

    # ---------------------------------------------------------------- internals

    def _run(self, tool: str, *args: str, step: str, conf: bool = True) -> str:
        argv = [tool, *args]
        if conf:
            argv += ["-s", str(self.smb_conf)]
        done = subprocess.run(argv, capture_output=True, env=self.env(), check=False)
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            text = out.replace(self.admin_password, "***")
            raise SambaError(f"could not {step}: {tool} exited {done.returncode}: {text.strip()}")
        return out


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((KDC_ADDRESS, port)) == 0
