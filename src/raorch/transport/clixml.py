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

Writing is the same story: pypsrp's ``serialize`` builds a dict literal of ~30 lambdas, copies
an ``ObjectMeta`` for every list entry and hashtable key and value, and infers each tag through
a chain of type tests. The ``Operations`` parameter (a list of ~40 hashtables in every
pipeline) and the ~40 output hashtables per reply were, after the script's escaping, most of
raorch's CPU per host (py-spy and cProfile, docs/benchmarks.md). Plain values (None, bool, int,
float, str, bytes, UUID, list, dict) are written and hashtables read here directly, element for
element and RefId for RefId what pypsrp writes and reads; everything else goes to pypsrp.
"""

from __future__ import annotations

import base64
import re
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
# What pypsrp's ``_serialize_string`` escapes: "_" (before an x, either case) and the C0, C1
# and non-BMP characters of its ``_serial_str``. A string with none of them is written as is.
_TO_ESCAPE = re.compile("[_\u0000-\u001f\u007f-\u009f\U00010000-\U0010ffff]")


# pypsrp's inferred tag for each plain type it writes (serializer.py, ``_get_tag_from_value``:
# exact types, so a bool is "B", not "I32").
_PLAIN_TAGS: dict[type, str] = {
    int: "I32",
    bool: "B",
    float: "Sg",
    str: "S",
    bytes: "BA",
    uuid.UUID: "G",
    list: "LST",
    dict: "DCT",
    type(None): "S",  # pypsrp's catch-all; a None is then written as Nil
}
# The .NET type names pypsrp gives a plain list and dict (complex_objects.py, ListMeta and
# DictionaryMeta defaults).
_LIST_TYPES = ["System.Object[]", "System.Array", "System.Object"]
_DICT_TYPES = ["System.Collections.Hashtable", "System.Object"]


class TolerantSerializer(Serializer):
    def serialize(
        self,
        value: Any,
        metadata: ObjectMeta | None = None,
        parent: ET.Element | None = None,
        clear: bool = True,
    ) -> ET.Element | None:
        tag = _PLAIN_TAGS.get(type(value))
        if tag is None or not (
            metadata is None or (type(metadata) is ObjectMeta and metadata.tag == "*")
        ):
            return super().serialize(value, metadata, parent, clear)
        if clear:
            self._clear()
        name = None
        if metadata is not None:
            metadata.tag = tag  # as pypsrp does: an inferred tag is kept on the metadata
            name = metadata.name
        return self._write(value, tag, name, parent)

    def _write(
        self, value: Any, tag: str, name: str | None, parent: ET.Element | None
    ) -> ET.Element:
        """One plain value as pypsrp writes it with a fresh ``ObjectMeta(name=name)``."""
        element: ET.Element
        if value is None:
            element = ET.Element("Nil")
        elif tag == "S":
            element = ET.Element("S")
            element.text = self._serialize_string(value)
        elif tag == "DCT":
            element = ET.Element("Obj", RefId=self._get_obj_id())
            self._create_tn(element, _DICT_TYPES)
            dct = ET.SubElement(element, "DCT")
            for key, item in value.items():
                entry = ET.SubElement(dct, "En")
                self._write_child(key, "Key", entry)
                self._write_child(item, "Value", entry)
        elif tag == "LST":
            element = ET.Element("Obj", RefId=self._get_obj_id())
            self._create_tn(element, _LIST_TYPES)
            lst = ET.SubElement(element, "LST")
            for item in value:
                self._write_child(item, None, lst)
        else:
            element = ET.Element(tag)
            if tag == "B":
                element.text = "true" if value else "false"
            elif tag == "BA":
                element.text = base64.b64encode(value).decode("ascii")
            else:
                element.text = str(value)
        if name is not None:
            element.attrib["N"] = name
        if parent is not None:
            parent.append(element)
        return element

    def _write_child(self, value: Any, name: str | None, parent: ET.Element) -> None:
        tag = _PLAIN_TAGS.get(type(value))
        if tag is None:
            super().serialize(value, ObjectMeta(name=name), parent, clear=False)
        else:
            self._write(value, tag, name, parent)

    def deserialize(
        self,
        element: ET.Element | str,
        metadata: ObjectMeta | None = None,
        clear: bool = True,
    ) -> Any:
        if isinstance(element, str) and metadata is None:
            # A whole reply (one output object): parsed once here, then read as below; the
            # text goes to pypsrp whenever the element needs its path (it keeps the text).
            try:
                parsed = ET.fromstring(element)
            except ET.ParseError:
                return super().deserialize(element, metadata, clear)
            fast = self._fast(parsed, parsed.tag, None, clear)
            if fast is not _SLOW:
                return fast
            return super().deserialize(element, metadata, clear)
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
        types = self._types_of(element)
        make = _CONTAINERS.get(types[0]) if types else None
        if make is None:
            return _SLOW
        value: Any
        if make is DictionaryMeta:
            value = self._read_dct(element)
        else:
            value = self._deserialize_lst(element, make())
        self.obj[element.attrib["RefId"]] = value
        return value

    def _types_of(self, element: ET.Element) -> list[str]:
        """pypsrp's ``_get_types_from_obj`` (the ``TN/T`` names, recorded under the first
        ``TN``'s RefId; a ``TNRef`` wins), by one walk over the children instead of three
        ElementPath searches."""
        types: list[str] = []
        first_tn: ET.Element | None = None
        tn_ref: ET.Element | None = None
        for child in element:
            if child.tag == "TN":
                if first_tn is None:
                    first_tn = child
                types.extend(t.text or "" for t in child if t.tag == "T")
            elif child.tag == "TNRef" and tn_ref is None:
                tn_ref = child
        if types and first_tn is not None:
            self.tn[first_tn.attrib["RefId"]] = types
        if tn_ref is not None:
            found: list[str] = self.tn[tn_ref.attrib["RefId"]]
            return found
        return types

    def _read_dct(self, element: ET.Element) -> dict[Any, Any]:
        """pypsrp's ``_deserialize_dct`` (every ``DCT/En``; its first child named ``Key`` and
        its first named ``Value``, each read in turn), without an ElementPath predicate per
        entry."""
        dictionary: dict[Any, Any] = {}
        for dct in element:
            if dct.tag != "DCT":
                continue
            for entry in dct:
                if entry.tag != "En":
                    continue
                key_element: ET.Element | None = None
                value_element: ET.Element | None = None
                for child in entry:
                    n = child.get("N")
                    if n == "Key" and key_element is None:
                        key_element = child
                    elif n == "Value" and value_element is None:
                        value_element = child
                key = self.deserialize(key_element if key_element is not None else "", clear=False)
                value = self.deserialize(
                    value_element if value_element is not None else "", clear=False
                )
                dictionary[key] = value
        return dictionary

    def _serialize_string(self, value: str | None) -> str | None:
        if isinstance(value, str):
            if len(value) >= _CACHED_STRING:
                return _escaped(value)
            if _TO_ESCAPE.search(value) is None:
                return value  # nothing pypsrp's two substitutions would change
        result: str | None = super()._serialize_string(value)
        return result

    def _deserialize_string(self, value: str | None) -> str:
        # pypsrp only ever replaces ``_xHHHH_`` (lower-case x); without "_x" its UTF-16 round
        # trip gives back the same text.
        if value is not None and "_x" not in value:
            return value
        result: str = super()._deserialize_string(value)
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
