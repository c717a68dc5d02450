"""Two gaps of pypsrp 0.9.1's CLIXML reader, closed for raorch's replies.

1. An empty byte array arrives as ``<BA />`` (PowerShell writes ``<BA></BA>``, psrpcore
   ``<BA />``); pypsrp passes the missing text to ``base64.b64decode`` and raises TypeError, so
   one empty REG_BINARY value would fail a whole pipeline.
2. The elements of a ``System.Object[]`` are all read as ``GenericComplexObject``
   (``ListMeta(list_value_meta=ObjectMeta("ObjDynamic"))``), so a hashtable inside an array
   (``Values``, ``Members``, ``Rules``) loses its entries.

``TolerantSerializer`` handles both and is otherwise pypsrp's own; ``runspace_pool`` installs
it on a pool. The batch script avoids both on real hosts as well (ArrayList, null for empty
bytes), so this is the second line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from pypsrp.complex_objects import GenericComplexObject, ObjectMeta
from pypsrp.powershell import Fragmenter, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan


class TolerantSerializer(Serializer):
    def deserialize(
        self,
        element: ET.Element | str,
        metadata: ObjectMeta | None = None,
        clear: bool = True,
    ) -> Any:
        if isinstance(element, ET.Element):
            if element.tag == "BA" and not element.text:
                return b""
            if (
                element.tag == "Obj"
                and element.find("DCT") is not None
                and metadata is not None
                and metadata.object is GenericComplexObject
            ):
                # A dictionary read as a generic object: let its own type names decide.
                metadata = None
        return super().deserialize(element, metadata, clear)


def runspace_pool(wsman: WSMan) -> RunspacePool:
    """A RunspacePool on ``wsman`` that reads replies with ``TolerantSerializer``.

    RunspacePool builds its serializer in ``__init__`` and shares it with its fragmenter
    (pypsrp 0.9.1, powershell.py); both are replaced before anything is sent.
    """
    pool = RunspacePool(wsman)
    serializer = TolerantSerializer()
    pool._serializer = serializer
    pool._fragmenter = Fragmenter(wsman.max_payload_size, serializer)
    return pool
