"""The one PowerShell script raorch runs on a host: the files of ``scripts/`` joined in order.

The text is a constant of the release (docs/remote-operations.md, "One pipeline = one batch"):
every input travels as the ``Operations`` remoting parameter, nothing is ever formatted into it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

MARKER = "# raorch-batch v1"

# One concern per file; the order matters: the header holds the marker line and the param()
# block, which PowerShell only accepts before any statement, and dispatch runs the operations
# that the files before it define.
SCRIPT_FILES: tuple[str, ...] = (
    "header.ps1",
    "results.ps1",
    "facts.ps1",
    "registry.ps1",
    "accounts.ps1",
    "groups.ps1",
    "firewall.ps1",
    "tasks.ps1",
    "policy.ps1",
    "dispatch.ps1",
)


def script_file(name: str) -> str:
    """The text of one shipped ``.ps1`` file (package data)."""
    return resources.files("raorch.transport").joinpath("scripts", name).read_text("utf-8")


@cache
def batch_script() -> str:
    """The whole batch script, read once per process."""
    text = "\n".join(script_file(name).rstrip("\n") + "\n" for name in SCRIPT_FILES)
    if not text.startswith(MARKER + "\n"):
        # A packaging mistake, not a user error: the lab and the contract key on this line.
        raise RuntimeError(f"raorch's batch script does not start with {MARKER!r}")
    return text
