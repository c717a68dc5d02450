"""The state directory and its private files: where raorch keeps what it records locally.

The journal (SQLite), the run locks, the JSON-lines logs and the acceptance state all live in
``$RAORCH_HOME`` (default ``./.raorch``): the directory is 0700 and the files 0600, because
snapshots and logs describe the security settings of every host. Apart from the journal so
that a journal kept elsewhere (another backend) leaves the local files where they are.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """``$RAORCH_HOME`` or ``./.raorch``."""
    return Path(os.environ.get("RAORCH_HOME") or Path.cwd() / ".raorch")


def private_dir(path: Path) -> Path:
    """Create ``path`` and make it 0700: snapshots and logs are sensitive. Parents it has to
    create are 0700 too (``rollouts/`` above ``rollouts/<id>``), whatever the umask."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if absent, owner read/write only."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path
