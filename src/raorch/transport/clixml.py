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

It is also faster, with the same results (bench/rollout.py, docs/benchmarks.md): pypsrp's
``deserialize`` re-serializes every element it visits (``ET.tostring``, kept only for unknown
types and ``ComplexObject._xml``) and builds two dict literals of ~60 entries per call; for
raorch's replies (hashtables, ArrayLists and primitives) that was most of the client's CPU.
Primitives, hashtables and ArrayLists are read directly here, as pypsrp would read them; and
the batch script, 24 KB sent in every pipeline, is escaped once per process, not once per call.
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pypsrp.complex_objects import DictionaryMeta, GenericComplexObject, ListMeta, ObjectMeta
from pypsrp.powershell import Fragmenter, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

# Primitive CLIXML tags read exactly as pypsrp 0.9.1's ``Serializer.deserialize`` reads them
# (serializer.py, ``unpack_function``); ``SS`` and ``Ref`` stay with pypsrp. Their ``text`` is
# never None here: an empty element goes to pypsrp, which treats it as it always did.
_PRIMITIVE_TEXT: dict[str, Callable[[str], Any]] = {
    "C": lambda t: chr(int(t)),
    "B": lambda t: t.lower() == "true",
    "DT": lambda t: t,
    "TS": lambda t: t,
    "By": int,
    "SB": int,
    "U16": int,
    "I16": int,
    "U32": int,
    "I32": int,
    "U64": int,
    "I64": int,
    "Sg": float,
    "Db": float,
    "D": lambda t: t,
    "BA": base64.b64decode,
    "G": uuid.UUID,
    "Version": lambda t: t,
}
_STRINGS = frozenset({"S", "ToString", "URI", "XD", "SBK"})

# Complex types read directly, by their first type name (pypsrp's ``structures``).
_CONTAINERS: dict[str, Callable[[], ObjectMeta]] = {
    "System.Collections.Hashtable": DictionaryMeta,
    "Deserialized.System.Collections.Hashtable": DictionaryMeta,
    "System.Collections.ArrayList": ListMeta,
    "Deserialized.System.Collections.ArrayList": ListMeta,
}

# Strings at least this long are escaped through a cache (the batch script).
_CACHED_STRING = 4096


class TolerantSerializer(Serializer):
    def deserialize(
        self,
        element: ET.Element | str,
        metadata: ObjectMeta | None = None,
        clear: bool = True,
    ) -> Any:
        if isinstance(element, ET.Element):
            tag = element.tag
            if tag == "BA" and not element.text:
                return b""
            if (
                tag == "Obj"
                and element.find("DCT") is not None
                and metadata is not None
                and metadata.object is GenericComplexObject
            ):
                # A dictionary read as a generic object: let its own type names decide.
                metadata = None
            fast = self._fast(element, tag, metadata, clear)
            if fast is not _SLOW:
                return fast
        return super().deserialize(element, metadata, clear)

    def _fast(self, element: ET.Element, tag: str, metadata: ObjectMeta | None, clear: bool) -> Any:
        """The value pypsrp would give, without its per-element cost; ``_SLOW`` when this
        element needs pypsrp's own path."""
        if metadata is not None and metadata.tag == "*":
            metadata.tag = tag  # as pypsrp does (a shared list_value_meta keeps it)
        if tag == "Nil":
            if clear:
                self._clear()
            return None
        text = element.text
        if text is not None:
            if tag in _STRINGS:
                if clear:
                    self._clear()
                return self._deserialize_string(text)
            read = _PRIMITIVE_TEXT.get(tag)
            if read is not None:
                if clear:
                    self._clear()
                return read(text)
        if tag != "Obj":
            return _SLOW
        expected = metadata is not None and (
            type(metadata) is not ObjectMeta or metadata.object is not None
        )
        if expected:
            return _SLOW  # a type pypsrp was told to expect
        if clear:
            self._clear()
        types = self._get_types_from_obj(element)
        make = _CONTAINERS.get(types[0]) if types else None
        if make is None:
            return _SLOW
        value: Any
        if make is DictionaryMeta:
            value = self._deserialize_dct(element)
        else:
            value = self._deserialize_lst(element, make())
        self.obj[element.attrib["RefId"]] = value
        return value

    def _serialize_string(self, value: str | None) -> str | None:
        if value is not None and len(value) >= _CACHED_STRING:
            return _escaped(value)
        result: str | None = super()._serialize_string(value)
        return result


_SLOW = object()


@lru_cache(maxsize=8)
def _escaped(value: str) -> str | None:
    result: str | None = Serializer._serialize_string(_ESCAPER, value)
    return result


_ESCAPER = Serializer()


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
