"""The transport: raorch's PowerShell batch, its wire format, and WinRM host sessions.

Public API: ``HostSession`` (session.py), ``TransportError`` (errors.py), ``batch_script``
(script.py), ``to_wire`` / ``from_wire`` (wire.py). The contract it implements is
docs/remote-operations.md.
"""

from raorch.transport.errors import TransportError
from raorch.transport.script import MARKER, batch_script
from raorch.transport.session import HostSession
from raorch.transport.wire import from_wire, to_wire

__all__ = ["MARKER", "HostSession", "TransportError", "batch_script", "from_wire", "to_wire"]
