"""TolerantSerializer's fast path gives exactly what its pypsrp path gives (the reference:
the same serializer with the fast path switched off), for generated replies."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pypsrp.complex_objects import ComplexObject
from pypsrp.serializer import Serializer

from raorch.transport import clixml
from raorch.transport.clixml import TolerantSerializer


class _Reference(TolerantSerializer):
    def _fast(self, *args: Any) -> Any:
        return clixml._SLOW


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=30),
    st.text(alphabet="_xX\n\t\x00\x1f\x7f\u00e9\U0001f600", max_size=12),
    st.binary(min_size=1, max_size=12),
    st.uuids(),
    st.floats(allow_nan=False),
)
replies = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


def plain(value: Any) -> Any:
    """Comparable form: pypsrp's objects have no ``__eq__``."""
    if isinstance(value, ComplexObject):
        return (
            type(value).__name__,
            tuple(value.types),
            plain(value.adapted_properties),
            plain(value.extended_properties),
            value._xml,
        )
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def clixml_of(value: Any) -> str:
    element = Serializer().serialize(value)
    return ET.tostring(element, encoding="unicode")


@settings(max_examples=300, deadline=None)
@given(replies)
def test_fast_path_matches_pypsrp_path(value: Any) -> None:
    text = clixml_of(value)
    assert outcome(TolerantSerializer(), text) == outcome(_Reference(), text)


def outcome(serializer: Serializer, text: str) -> Any:
    """The value read, or the error raised (pypsrp cannot read some of its own nestings,
    e.g. ``[[{}], {}]``: the fast path must fail the same way)."""
    try:
        return plain(serializer.deserialize(text))
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


def test_fast_path_reads_lists_and_hashtables() -> None:
    value = {"Ok": True, "Values": [{"Name": "a_x", "Data": b"\x01"}, 7], "Id": uuid.UUID(int=1)}
    assert TolerantSerializer().deserialize(clixml_of(value)) == value


def test_long_strings_escape_as_pypsrp_does() -> None:
    script = "line _x0041_ \u00e9\n\t" * 500
    assert TolerantSerializer()._serialize_string(script) == Serializer()._serialize_string(script)
    assert TolerantSerializer()._serialize_string(script) == Serializer()._serialize_string(script)
