"""The lab's state directory: where hosts' states, the ready marker and secrets live.

Layout of ``<state-dir>``::

    hosts/<host>.json   one host's emulated state (``raorch lab state`` shape), written
                        atomically after every pipeline that changed it
    lab.json            ready marker, written once every listener is up: pid, started,
                        scheme, auth, ports, admin port and token (owner-only)
    password            the login password when RAORCH_LAB_PASSWORD is not set (0600)
    faults.yaml         watched faults file when ``--faults`` is not given
    tls/                the lab's CA (lab-ca.pem) and server certificate
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

PASSWORD_ENV = "RAORCH_LAB_PASSWORD"


def hosts_dir(state_dir: Path) -> Path:
    return state_dir / "hosts"


def host_file(state_dir: Path, name: str) -> Path:
    return hosts_dir(state_dir) / f"{name}.json"


def marker_file(state_dir: Path) -> Path:
    return state_dir / "lab.json"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a sibling temporary file, then rename over ``path`` (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=False).encode(), mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def lab_password(state_dir: Path) -> tuple[str, str]:
    """(password, reference for the inventory): the env variable when set, else a generated
    password kept in ``<state-dir>/password`` (0600) and reused on restart."""
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env, f"env:{PASSWORD_ENV}"
    path = state_dir / "password"
    if path.exists():
        password = path.read_text(encoding="utf-8").strip()
        os.chmod(path, 0o600)
    else:
        # "-Aa1": a domain lab gives this password to domain users, and Active Directory's
        # default policy wants three of: upper case, lower case, digits, other characters.
        password = secrets.token_urlsafe(18) + "-Aa1"
        atomic_write(path, password.encode(), 0o600)
    return password, f"file:{path.resolve()}"
