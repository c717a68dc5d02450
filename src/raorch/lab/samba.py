"""A real Active Directory domain controller for the lab: Samba's AD DC (Debian's
``samba-ad-dc``), provisioned into a private directory and served on the loopback interface.

The emulated hosts stay Python, but the domain they belong to is real: a Kerberos KDC (port 88)
and LDAP (389, 636) that issue real tickets and hold real accounts (objectSid, user or group,
disabled). Nothing outside the state directory is touched: no /etc/krb5.conf, no DNS (the
domain is provisioned with ``--dns-backend=NONE``), so the krb5.conf that clients need is
written here and named by ``KRB5_CONFIG``.

Samba binds fixed ports (88, 389, 636, 445, 135) on 127.0.0.1: one DC per machine at a time.

Objects are created over LDAPS (``ldap3``, validated against the CA Samba generated at
provision) rather than with ``samba-tool``: one Python start of samba-tool costs about a second,
an LDAP add about 25 ms. ``register_hosts`` gives many lab hosts a computer account, their SPNs
and their keys in one keytab that way (the keys are derived here from the password it sets,
with the salt Active Directory uses: [MS-KILE] 3.1.1.2).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raorch.lab.tls import write_dc_certificates

REALM = "CORP.RAORCH.TEST"
NETBIOS_DOMAIN = "CORP"
DC_HOST_NAME = "dc1"
KDC_ADDRESS = "127.0.0.1"
# The ports Samba serves, all on loopback; `ready` waits for Kerberos and LDAP.
KDC_PORT = 88
LDAP_PORT = 389
LDAPS_PORT = 636

# userAccountControl flags ([MS-ADTS] 2.2.16): ACCOUNTDISABLE, NORMAL_ACCOUNT,
# WORKSTATION_TRUST_ACCOUNT.
UAC_ACCOUNTDISABLE = 0x2
UAC_NORMAL_ACCOUNT = 0x200
UAC_WORKSTATION_TRUST_ACCOUNT = 0x1000
# groupType of a global security group ([MS-ADTS] 2.2.12: GROUP_TYPE_ACCOUNT_GROUP |
# GROUP_TYPE_SECURITY_ENABLED), what "New Group" creates by default.
GROUP_TYPE_GLOBAL_SECURITY = -2147483646
# msDS-SupportedEncryptionTypes of a lab computer: RC4 | AES128 | AES256 (0x1C), what a Windows
# member writes on its account ([MS-KILE] 2.2.7). Without it Samba issued RC4 service tickets
# here; with it, AES256. The keytab holds a key of each type.
HOST_SUPPORTED_ENCTYPES = 0x1C
HOST_ENCTYPES = ("aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96", "arcfour-hmac")
# LDAP result codes (RFC 4511, 4.1.9).
_LDAP_NO_SUCH_OBJECT = 32
_LDAP_ALREADY_EXISTS = 68
_LDAP_ATTRIBUTE_EXISTS = 20

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


def sid_from_bytes(raw: bytes) -> str:
    """The string form of a binary SID (objectSid, tokenGroups): revision, 48-bit big-endian
    identifier authority, then little-endian 32-bit sub-authorities ([MS-DTYP] 2.4.2.2)."""
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ValueError(f"not a binary SID: {raw.hex()}")
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i : 12 + 4 * i], "little") for i in range(raw[1])]
    return "-".join(["S", str(raw[0]), str(authority), *(str(x) for x in subs)])


def sid_to_bytes(sid: str) -> bytes:
    """The binary form of ``S-1-5-21-...`` (inverse of ``sid_from_bytes``)."""
    parts = sid.split("-")
    if len(parts) < 3 or parts[0].upper() != "S":
        raise ValueError(f"not a SID: {sid!r}")
    subs = [int(x) for x in parts[3:]]
    return (
        bytes([int(parts[1]), len(subs)])
        + int(parts[2]).to_bytes(6, "big")
        + b"".join(x.to_bytes(4, "little") for x in subs)
    )


@dataclass(frozen=True, slots=True)
class HostAccount:
    """A lab host as a domain computer: its computer account (``account``, the
    sAMAccountName without ``$``) and its DNS name (``fqdn``), from which its SPNs come."""

    host: str
    account: str
    fqdn: str

    @property
    def spns(self) -> tuple[str, ...]:
        """What a Windows member's account carries: HOST/ (which the KDC maps HTTP/ onto;
        registered explicitly here), and WSMAN/, which the WinRM service registers for itself
        and which pypsrp asks for by default (``negotiate_service='WSMAN'``)."""
        return (
            f"HOST/{self.fqdn}",
            f"HOST/{self.account}",
            f"HTTP/{self.fqdn}",
            f"WSMAN/{self.fqdn}",
            f"WSMAN/{self.account}",
        )


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What ``register_hosts`` did: accounts created, whose password it reset (the keytab
    did not hold their current key), and reused as they were."""

    created: int
    reset: int
    reused: int


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
    _ldap: Any = field(default=None, init=False, repr=False)

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
    def ca_file(self) -> Path:
        """The CA Samba generated at provision, which signed its LDAPS certificate."""
        return self.directory / "private" / "tls" / "ca.pem"

    @property
    def dc_fqdn(self) -> str:
        return fqdn(DC_HOST_NAME, self.realm)

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
        write_dc_certificates(self.ca_file.parent, self.dc_fqdn)
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

    def start(self, timeout: float = 60.0, *, exit_with_caller: bool = True) -> None:
        """Serve the domain (provisioning it first if needed).

        ``exit_with_caller``: samba's standard input is a pipe that only this process holds.
        ``samba -i`` ends, and sends SIGTERM to its process group, when its standard input is a
        pipe that reaches end of file (source4/samba/server.c, ``server_stdin_handler``): so a
        caller that dies, even by SIGKILL, leaves no samba behind. With False its input is
        /dev/null, which samba does not watch: the DC outlives its starter.
        """
        # Before provisioning: a machine whose ports are taken gets no new domain either.
        busy = [port for port in (KDC_PORT, LDAP_PORT) if _listening(port)]
        if busy:
            raise SambaError(
                f"port {busy[0]} on {KDC_ADDRESS} is already in use: another domain controller "
                "(or a lab started with --directory samba) is running on this machine; stop it "
                "first (Samba binds fixed ports, one DC per machine)"
            )
        if not self.provisioned:
            self.provision()
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            ["samba", "-s", str(self.smb_conf), "-i", "--debug-stdout", "-d", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if exit_with_caller else subprocess.DEVNULL,
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
            # LDAPS too, and the CA it generates on its first start (ldap_connect checks the
            # certificate against it): a new domain's LDAPS is not ready with plain LDAP.
            ports = (KDC_PORT, LDAP_PORT, LDAPS_PORT)
            if all(_listening(port) for port in ports) and self.ca_file.is_file():
                return
            time.sleep(0.2)
        self.stop()
        raise SambaError(
            f"samba did not listen on {KDC_ADDRESS}:{KDC_PORT}, :{LDAP_PORT} and "
            f":{LDAPS_PORT} within {timeout:.0f} s; its log is {self.log_file}"
        )

    def stop(self) -> None:
        self.close_ldap()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is not None:
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

    # ---------------------------------------------------------------- over LDAP (fast)

    def ldap(self) -> Any:
        """An LDAPS connection bound as the domain Administrator (kept; ``close_ldap``).

        Samba refuses simple binds without TLS ("ldap server require strong auth"), so this is
        LDAPS, with the certificate checked against the DC's own CA and name."""
        if self._ldap is None:
            self._ldap = ldap_connect(self, f"Administrator@{self.realm}", self.admin_password)
        return self._ldap

    def close_ldap(self) -> None:
        conn, self._ldap = self._ldap, None
        if conn is not None:
            conn.unbind()

    def find(self, name: str, attributes: Sequence[str] = ("objectSid",)) -> Any | None:
        """The directory entry whose sAMAccountName is ``name`` (any case), or None."""
        from ldap3.utils.conv import escape_filter_chars

        conn = self.ldap()
        conn.search(
            self.base_dn,
            f"(sAMAccountName={escape_filter_chars(name)})",
            attributes=list(attributes),
        )
        return conn.entries[0] if conn.entries else None

    def ensure_user(
        self, name: str, password: str, *, enabled: bool = True, admin: bool = False
    ) -> str:
        """A domain user ``name`` with this password (created, or its password set again);
        ``admin``: also a member of Domain Admins. Returns its DN."""
        conn = self.ldap()
        entry = self.find(name)
        pwd = _unicode_pwd(password)
        if entry is None:
            dn = f"CN={_rdn(name)},CN=Users,{self.base_dn}"
            uac = UAC_NORMAL_ACCOUNT | (0 if enabled else UAC_ACCOUNTDISABLE)
            attrs = {
                "sAMAccountName": name,
                "userPrincipalName": f"{name}@{self.realm.lower()}",
                "unicodePwd": pwd,
                "userAccountControl": uac,
            }
            _check(
                conn,
                conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs),
                f"create user {name}",
            )
        else:
            dn = entry.entry_dn
            _check(
                conn,
                conn.modify(dn, {"unicodePwd": [("MODIFY_REPLACE", [pwd])]}),
                f"set the password of user {name}",
            )
        if admin:
            self.add_members("Domain Admins", [dn])
        return str(dn)

    def ensure_group(self, name: str, members: Iterable[str] = ()) -> str:
        """A global security group ``name`` (created if missing) holding at least ``members``
        (sAMAccountNames). Returns its DN."""
        conn = self.ldap()
        entry = self.find(name)
        if entry is None:
            dn = f"CN={_rdn(name)},CN=Users,{self.base_dn}"
            attrs = {"sAMAccountName": name, "groupType": GROUP_TYPE_GLOBAL_SECURITY}
            _check(conn, conn.add(dn, ["top", "group"], attrs), f"create group {name}")
        else:
            dn = entry.entry_dn
        member_dns = []
        for member in members:
            found = self.find(member)
            if found is None:
                raise SambaError(f"cannot add {member} to group {name}: no such account")
            member_dns.append(found.entry_dn)
        self.add_members(name, member_dns)
        return str(dn)

    def add_members(self, group: str, member_dns: Sequence[str]) -> None:
        if not member_dns:
            return
        entry = self.find(group)
        if entry is None:
            raise SambaError(f"no group {group} in the domain")
        conn = self.ldap()
        for dn in member_dns:
            ok = conn.modify(entry.entry_dn, {"member": [("MODIFY_ADD", [dn])]})
            # Already a member: Samba answers entryAlreadyExists, AD attributeOrValueExists.
            already = (_LDAP_ATTRIBUTE_EXISTS, _LDAP_ALREADY_EXISTS)
            if not ok and conn.result["result"] not in already:
                _check(conn, ok, f"add {dn} to group {group}")

    def delete(self, name: str) -> bool:
        """Delete the account ``name`` (a user, group or computer ``NAME$``); False if absent."""
        entry = self.find(name)
        if entry is None:
            return False
        conn = self.ldap()
        _check(conn, conn.delete(entry.entry_dn), f"delete {name}")
        return True

    def register_hosts(self, hosts: Sequence[HostAccount], keytab: Path) -> RegisterResult:
        """Make each host a domain computer that can accept Kerberos: its computer account
        (``userAccountControl`` WORKSTATION_TRUST_ACCOUNT, ``dNSHostName``, the SPNs of
        ``HostAccount.spns``, a random password: without one the KDC answered "KDC has no
        support for encryption type"), and its keys in ``keytab``.

        One search finds the accounts that exist; an account whose current key version
        (``msDS-KeyVersionNumber``) the keytab already holds is reused as it is (a lab
        restarted on the same domain), others are created or get a new password. Measured
        here: ~25 ms per new host (one LDAP add) plus ~8 ms of key derivation, against ~1 s
        per host for ``add_host`` (four samba-tool runs)."""
        import krb5

        conn = self.ldap()
        ctx = _krb5_context(self)
        held = keytab_kvnos(keytab) if keytab.exists() else {}
        existing = self._computers([h.account for h in hosts])
        kt = krb5.kt_resolve(ctx, f"FILE:{keytab}".encode())
        created = reset = reused = 0
        for host in hosts:
            found = existing.get(host.account.upper())
            principal = f"{host.spns[0]}@{self.realm}"
            if found is not None and held.get(principal) == found[1]:
                reused += 1
                continue
            password = secrets.token_urlsafe(30)
            if found is None:
                dn = f"CN={_rdn(host.account)},CN=Computers,{self.base_dn}"
                attrs = {
                    "sAMAccountName": host.account + "$",
                    "userAccountControl": UAC_WORKSTATION_TRUST_ACCOUNT,
                    "dNSHostName": host.fqdn,
                    "servicePrincipalName": list(host.spns),
                    "msDS-SupportedEncryptionTypes": HOST_SUPPORTED_ENCTYPES,
                    "unicodePwd": _unicode_pwd(password),
                }
                ok = conn.add(
                    dn, ["top", "person", "organizationalPerson", "user", "computer"], attrs
                )
                _check(conn, ok, f"create computer {host.account}")
                kvno = 1
                created += 1
            else:
                dn, old = found
                changes = {
                    "unicodePwd": [("MODIFY_REPLACE", [_unicode_pwd(password)])],
                    "servicePrincipalName": [("MODIFY_REPLACE", list(host.spns))],
                    "dNSHostName": [("MODIFY_REPLACE", [host.fqdn])],
                    "msDS-SupportedEncryptionTypes": [
                        ("MODIFY_REPLACE", [HOST_SUPPORTED_ENCTYPES])
                    ],
                }
                _check(conn, conn.modify(dn, changes), f"set the password of {host.account}")
                kvno = self._kvno(dn) or old + 1
                reset += 1
            _add_keys(ctx, kt, self.realm, host, password, kvno)
        return RegisterResult(created, reset, reused)

    def unregister_hosts(self, hosts: Sequence[HostAccount]) -> int:
        """Delete the computer accounts of ``hosts`` (a lab that shared a DC, at its end)."""
        conn = self.ldap()
        gone = 0
        for dn, _kvno in self._computers([h.account for h in hosts]).values():
            if conn.delete(dn):
                gone += 1
        return gone

    def _computers(self, accounts: Sequence[str]) -> dict[str, tuple[str, int]]:
        """{ACCOUNT: (dn, msDS-KeyVersionNumber)} of the computer accounts among ``accounts``,
        in searches of up to 200 names each."""
        from ldap3.utils.conv import escape_filter_chars

        conn = self.ldap()
        out: dict[str, tuple[str, int]] = {}
        names = list(accounts)
        for start in range(0, len(names), 200):
            part = names[start : start + 200]
            terms = "".join(f"(sAMAccountName={escape_filter_chars(n + '$')})" for n in part)
            conn.search(
                self.base_dn,
                f"(&(objectClass=computer)(|{terms}))",
                attributes=["sAMAccountName", "msDS-KeyVersionNumber"],
            )
            for entry in conn.entries:
                sam = str(entry.sAMAccountName.value).rstrip("$").upper()
                kvno = entry["msDS-KeyVersionNumber"].value
                out[sam] = (entry.entry_dn, int(kvno) if kvno is not None else 1)
        return out

    def _kvno(self, dn: str) -> int | None:
        conn = self.ldap()
        conn.search(dn, "(objectClass=*)", "BASE", attributes=["msDS-KeyVersionNumber"])
        if not conn.entries:
            return None
        value = conn.entries[0]["msDS-KeyVersionNumber"].value
        return int(value) if value is not None else None

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


def ldap_connect(dc: SambaDC, user: str, password: str) -> Any:
    """An LDAPS connection to ``dc`` bound as ``user`` (``name@REALM``), its certificate
    checked against the DC's CA and name; SambaError when the DC refuses or does not answer."""
    import ssl

    from ldap3 import NONE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException

    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.dc_fqdn])
    # get_info=NONE: no schema download at bind (~0.2 s); values arrive as strings.
    server = Server(
        KDC_ADDRESS, port=LDAPS_PORT, use_ssl=True, tls=tls, connect_timeout=5, get_info=NONE
    )
    try:
        return Connection(server, user=user, password=password, auto_bind=True, receive_timeout=10)
    except LDAPException as exc:
        raise SambaError(
            f"cannot bind to the domain controller's LDAPS ({KDC_ADDRESS}:{LDAPS_PORT}) as "
            f"{user}: {exc}"
        ) from None


def keytab_kvnos(keytab: Path) -> dict[str, int]:
    """{principal: highest key version number} of the entries of ``keytab``."""
    import krb5

    ctx = krb5.init_context()
    kt = krb5.kt_resolve(ctx, f"FILE:{keytab}".encode())
    out: dict[str, int] = {}
    for entry in kt:
        name = krb5.unparse_name_flags(ctx, entry.principal).decode()
        out[name] = max(out.get(name, 0), entry.kvno)
    return out


def copy_keytab(source: Path, target: Path) -> int:
    """Append every entry of ``source`` to ``target``; returns how many."""
    import krb5

    ctx = krb5.init_context()
    src = krb5.kt_resolve(ctx, f"FILE:{source}".encode())
    dst = krb5.kt_resolve(ctx, f"FILE:{target}".encode())
    count = 0
    for entry in src:
        krb5.kt_add_entry(ctx, dst, entry.principal, entry.kvno, entry.timestamp, entry.key)
        count += 1
    return count


def _krb5_context(dc: SambaDC) -> Any:
    import krb5

    return krb5.init_context()


def _add_keys(ctx: Any, kt: Any, realm: str, host: HostAccount, password: str, kvno: int) -> None:
    """The host account's keys for each of its SPNs. Active Directory salts a computer
    account's AES keys with ``REALM`` + ``host`` + the account name without ``$`` (lower
    case) + ``.`` + the DNS domain ([MS-KILE] 3.1.1.2, "Cryptographic Material"); every SPN
    of the account shares these keys."""
    import krb5

    salt = f"{realm.upper()}host{host.account.lower()}.{realm.lower()}".encode()
    now = int(time.time())
    keys = [
        krb5.c_string_to_key(ctx, krb5.string_to_enctype(ctx, enctype), password.encode(), salt)
        for enctype in HOST_ENCTYPES
    ]
    for spn in host.spns:
        principal = krb5.parse_name_flags(ctx, f"{spn}@{realm}".encode())
        for key in keys:
            krb5.kt_add_entry(ctx, kt, principal, kvno, now, key)


def _unicode_pwd(password: str) -> bytes:
    """unicodePwd's value: the password in double quotes, UTF-16LE ([MS-ADTS] 3.1.1.3.1.5)."""
    return f'"{password}"'.encode("utf-16-le")


def _rdn(name: str) -> str:
    from ldap3.utils.dn import escape_rdn

    return str(escape_rdn(name))


def _check(conn: Any, ok: bool, step: str) -> None:
    if not ok:
        result = conn.result
        raise SambaError(
            f"could not {step}: LDAP {result.get('description')} ({result.get('result')}): "
            f"{result.get('message', '').strip()}"
        )


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((KDC_ADDRESS, port)) == 0
