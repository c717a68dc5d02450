"""The lab's direct CLIXML writer (raorch.lab.clixml) against psrpcore's serializer: the same
bytes for every value of the types it covers, and psrpcore's path for any other type."""

from __future__ import annotations

import uuid
from typing import Any
from xml.etree import ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from psrpcore import ServerPipeline, ServerRunspacePool
from psrpcore.types import PSInt, PSInt64, PSInvocationState, serialize
from pypsrp.serializer import Serializer

from raorch.lab.clixml import output_clixml, write_output

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),
    st.integers(min_value=-(1 << 31), max_value=(1 << 63) - 1),
    st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1).map(PSInt),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1).map(PSInt64),
    st.binary(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=12), inner, max_size=6),
    ),
    max_leaves=30,
)
_outputs = st.dictionaries(st.text(max_size=12), _values, max_size=8)


def _psrpcore(value: Any) -> bytes:
    return ET.tostring(serialize(value, None), encoding="utf-8", method="xml")


@settings(max_examples=400, deadline=None)
@given(_outputs)
def test_same_bytes_as_psrpcore(value: dict[str, Any]) -> None:
    assert output_clixml(value) == _psrpcore(value)


@settings(max_examples=100, deadline=None)
@given(_outputs)
def test_pypsrp_reads_the_same_values(value: dict[str, Any]) -> None:
    data = output_clixml(value)
    assert data is not None
    assert _read(data) == _read(_psrpcore(value))


def _read(data: bytes) -> Any:
    # pypsrp 0.9.1 cannot read an empty <BA /> (psrpcore writes one for b""): both paths must
    # then fail the same way.
    try:
        return Serializer().deserialize(data.decode())
    except TypeError as exc:
        return ("TypeError", str(exc))


def test_other_types_fall_back() -> None:
    assert output_clixml({"x": 1.5}) is None
    assert output_clixml({"x": (1, 2)}) is None
    assert output_clixml({"x": 1 << 64}) is None


def _sent(fast: bool, value: Any) -> list[bytes]:
    pool = ServerRunspacePool()
    pool.runspace_pool_id = uuid.UUID(int=1)
    pipeline = ServerPipeline(pool, uuid.UUID(int=2))
    pipeline.state = PSInvocationState.Running
    if fast:
        write_output(pipeline, value)
    else:
        pipeline.write_output(value)
    write_output(pipeline, {"second": 1.5})  # the fallback, numbered after the first object
    out = []
    while (payload := pool.data_to_send(200)) is not None:
        out.append(payload.data)
    return out


def test_queued_fragments_match_psrpcore() -> None:
    value = {"Op": "GetFacts", "Ok": True, "Error": None, "Names": ["a", "b" * 500], "N": 5}
    assert _sent(True, value) == _sent(False, value)
    assert len(_sent(True, value)) > 2


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=700))
def test_string_reader_matches_psrpcore(text: str, pad: int) -> None:
    from psrpcore.types._serializer import _serialize_string

    from raorch.lab.clixml import _deserialize_string, _psrpcore_deserialize_string

    # Escaped as a client escapes it; padding makes some strings long enough to be cached.
    escaped = _serialize_string(text + "\n_x" * pad)
    expected = _psrpcore_deserialize_string(escaped)
    assert _deserialize_string(escaped) == expected
    assert _deserialize_string(escaped) == expected  # a second time, from the cache
