"""A real PostgreSQL server for the tests: Debian's ``postgresql``, started on loopback in a
temporary directory (``initdb`` + ``pg_ctl``), stopped and removed at the end.

PostgreSQL refuses to run as root: as root its tools run as the ``postgres`` user
(``runuser``) on a directory that user owns. TCP connections (127.0.0.1) need a password
(scram-sha-256), so that a test can give raorch a URL with a password in it and look for it in
every output; the tests' own administration goes through the Unix socket in the directory
(trusted). raorch connects as the role ``raorch``, which owns the databases it is given and
nothing else (not a superuser): what a real deployment gives it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it: apt-get install postgresql (Debian), then run the tests again"
ROLE = "raorch"
# Looked for in every output of the tests that give it to raorch: it must never appear.
ROLE_PASSWORD = "pg-Raorch-s3cret-7781"
SUPERUSER = "postgres"
_SUPERUSER_PASSWORD = "pg-Super-s3cret-1204"


def postgres_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH, one directory
    per major version (the newest wins); elsewhere they are on PATH."""
    found: list[tuple[int, Path]] = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if version.isdigit():
            found.append((int(version), initdb.parent))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def postgres_available() -> str | None:
    """None when a PostgreSQL server can be started here, else what is missing and what to do."""
    if postgres_bindir() is None:
        return f"PostgreSQL's initdb was not found: {INSTALL_HINT}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[dev]' (or '.[postgresql]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"there is no '{SUPERUSER}' user to run PostgreSQL as: {INSTALL_HINT}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server in ``directory`` (made by the caller, removed by ``stop``)."""

    def __init__(self, directory: Path) -> None:
        bindir = postgres_bindir()
        assert bindir is not None, INSTALL_HINT
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self._names = itertools.count(1)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}"
                + (self.log.read_text(errors="replace") if self.log.exists() else "")
            )

    def start(self) -> None:
        pwfile = self.directory / "superuser-password"
        pwfile.write_text(_SUPERUSER_PASSWORD + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SUPERUSER)
            for path in (self.directory, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        # fsync off: the tests' server need not survive a power loss (a killed client is what
        # they exercise); loopback only.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.log),
            "-o",
            options,
            "start",
        )
        self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def admin(
        self, sql: str, params: tuple[Any, ...] = (), database: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser over the Unix socket (autocommit: CREATE
        DATABASE cannot run in a transaction); its rows, if any."""
        import psycopg

        with psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
        ) as conn:
            cursor = conn.execute(sql.encode(), params or None)
            return list(cursor.fetchall()) if cursor.description else []

    def url(self, database: str, user: str = ROLE, password: str | None = ROLE_PASSWORD) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "journal") -> str:
        """A fresh database owned by ``raorch``; its URL (with the password)."""
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{next(self._names)}"
        # FILE_COPY: a few times faster than the default (WAL_LOG) for the small template.
        self.admin(f'CREATE DATABASE "{name}" OWNER {ROLE} STRATEGY = FILE_COPY')
        return self.url(name)
