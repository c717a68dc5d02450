"""A direct CLIXML writer for the pipeline output objects of the contract.

psrpcore serialises each output object through PSObject and ElementTree, which was a fifth of
the lab's CPU per session (py-spy, 200-host rollout). The batch's outputs are hashtables of
strings, integers, booleans, nulls, byte arrays, lists and nested hashtables; for exactly
those types this module writes the bytes psrpcore would write ([MS-PSRP] 2.2.5: ``Obj`` with
``TN``/``TNRef`` type names, ``DCT``/``LST``, primitives; strings escaped as psrpcore's
``_serialize_string`` does). Any other type returns None and the caller keeps psrpcore's path.
tests/unit/test_lab_clixml.py checks the bytes against psrpcore's for generated values.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from psrpcore import ServerPipeline, StreamType
from psrpcore._payload import PSRPMessage, create_message
from psrpcore.types import PSInt, PSInt64, PSInvocationState, PSRPMessageType, _serializer
from psrpcore.types._serializer import _serialize_string

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1
_INT64_MAX = (1 << 63) - 1
_HASHTABLE = "<T>System.Collections.Hashtable</T><T>System.Object</T>"
_ARRAYLIST = "<T>System.Collections.ArrayList</T><T>System.Object</T>"


# What psrpcore's _serialize_string changes: "_x"/"_X" (any "_" is enough to take its path),
# control characters, surrogates and characters outside the BMP.
_NEEDS_ESCAPE = re.compile("[_\u0000-\u001f\u007f-\u009f\ud800-\udfff\U00010000-\U0010ffff]")


class _Unsupported(Exception):
    pass


def _text(value: str) -> str:
    # ElementTree escapes &, < and > in text; psrpcore escapes control characters, surrogates
    # and "_x" first.
    text = _serialize_string(value) if _NEEDS_ESCAPE.search(value) else value
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.obj_ref = 0
        self.type_refs: dict[str, int] = {}

    def _type_names(self, names: str) -> None:
        ref = self.type_refs.get(names)
        if ref is None:
            ref = self.type_refs[names] = len(self.type_refs)
            self.parts.append(f'<TN RefId="{ref}">{names}</TN>')
        else:
            self.parts.append(f'<TNRef RefId="{ref}" />')

    def _open_obj(self, attr: str, names: str) -> None:
        """``<Obj RefId=...>`` with its type names: the head of a hashtable or a list."""
        self.parts.append(f'<Obj RefId="{self.obj_ref}"{attr}>')
        self.obj_ref += 1
        self._type_names(names)

    def value(self, value: Any, name: str) -> None:
        """Write ``value``; ``name`` is the element's N attribute ("" for none)."""
        attr = f' N="{name}"' if name else ""
        parts = self.parts
        kind = type(value)
        if value is None:
            parts.append(f"<Nil{attr} />")
        elif kind is bool:
            parts.append(f"<B{attr}>{'true' if value else 'false'}</B>")
        elif kind is str:
            text = _text(value)
            parts.append(f"<S{attr}>{text}</S>" if text else f"<S{attr} />")
        elif kind is int or kind is PSInt:
            if kind is int and value > _INT32_MAX:
                if value > _INT64_MAX:
                    raise _Unsupported
                parts.append(f"<I64{attr}>{int(value)}</I64>")
            elif value < _INT32_MIN:
                raise _Unsupported
            else:
                parts.append(f"<I32{attr}>{int(value)}</I32>")
        elif kind is PSInt64:
            parts.append(f"<I64{attr}>{int(value)}</I64>")
        elif kind is bytes:
            data = base64.b64encode(value).decode()
            parts.append(f"<BA{attr}>{data}</BA>" if data else f"<BA{attr} />")
        elif kind is dict:
            self._open_obj(attr, _HASHTABLE)
            if value:
                parts.append("<DCT>")
                for key, item in value.items():
                    parts.append("<En>")
                    self.value(key, "Key")
                    self.value(item, "Value")
                    parts.append("</En>")
                parts.append("</DCT></Obj>")
            else:
                parts.append("<DCT /></Obj>")
        elif kind is list:
            self._open_obj(attr, _ARRAYLIST)
            if value:
                parts.append("<LST>")
                for item in value:
                    self.value(item, "")
                parts.append("</LST></Obj>")
            else:
                parts.append("<LST /></Obj>")
        else:
            raise _Unsupported


def output_clixml(value: Any) -> bytes | None:
    """The CLIXML of one output object, as psrpcore serialises it, or None when ``value``
    holds a type this writer does not cover."""
    writer = _Writer()
    try:
        writer.value(value, "")
    except _Unsupported:
        return None
    return "".join(writer.parts).encode("utf-8")


def write_output(pipeline: ServerPipeline, value: Any) -> None:
    """``pipeline.write_output(value)``, with the CLIXML written directly when it can be.

    The queuing below is the tail of psrpcore 0.3's ``RunspacePool.prepare_message`` (a
    PIPELINE_OUTPUT message, [MS-PSRP] 2.2.2.23, put on the pool's send buffer with the next
    object id); tests/unit/test_lab_clixml.py compares the fragments with psrpcore's own."""
    data = output_clixml(value)
    if data is None or pipeline.state != PSInvocationState.Running:
        pipeline.write_output(value)
        return
    pool = pipeline.runspace_pool
    message_type = PSRPMessageType.PipelineOutput
    b_msg = create_message(False, message_type, data, pool.runspace_pool_id, pipeline.pipeline_id)
    pool._send_buffer.append(
        PSRPMessage(
            message_type,
            bytearray(b_msg),
            pool.runspace_pool_id,
            pipeline.pipeline_id,
            pool._fragment_counter,
            StreamType.default,
        )
    )


# ------------------------------------------------------------------ reading strings

_psrpcore_deserialize_string: Callable[[str], str] = _serializer._deserialize_string
_LONG = 512
_long_strings: dict[str, str] = {}


def _deserialize_string(value: str) -> str:
    """psrpcore's ``_deserialize_string`` (undo ``_xHHHH_`` escapes), without its per-call
    UTF-16 regex where the answer is known: a string without "_" has no escape, and a long
    string is the batch script, the same in every pipeline (~24 KB, 7.5% of the lab's CPU in a
    rollout), so its decoded text is kept by its escaped text."""
    if not isinstance(value, str):
        return _psrpcore_deserialize_string(value)  # psrpcore's own error for a missing text
    if "_" not in value:
        return value
    if len(value) < _LONG:
        return _psrpcore_deserialize_string(value)
    decoded = _long_strings.get(value)
    if decoded is None:
        if len(_long_strings) >= 16:
            _long_strings.clear()
        decoded = _long_strings[value] = _psrpcore_deserialize_string(value)
    return decoded


def install_string_reader() -> None:
    """Make psrpcore's deserializer use ``_deserialize_string`` (it looks the function up in
    its module at each call). Idempotent; the lab calls it once at import."""
    _serializer._deserialize_string = _deserialize_string
