"""TolerantSerializer's fast paths give exactly what pypsrp's own paths give: for reading, the
reference is the same serializer with the fast path switched off; for writing, pypsrp's
``Serializer`` itself, compared as the XML text that goes on the wire."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pypsrp.complex_objects import ComplexObject, GenericComplexObject, ObjectMeta
from pypsrp.serializer import Serializer

from raorch.transport import clixml
from raorch.transport.clixml import TolerantSerializer


class _Reference(TolerantSerializer):
    """pypsrp's own reading, with only the two gaps closed: no fast path, pypsrp's strings."""

    def _fast(self, *args: Any) -> Any:
        return clixml._SLOW

    def _deserialize_string(self, value: str | None) -> str:
        return Serializer._deserialize_string(self, value)  # type: ignore[no-any-return]


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


@settings(max_examples=300, deadline=None)
@given(replies, st.sampled_from([None, "V", "Operations"]))
def test_writing_matches_pypsrp(value: Any, name: str | None) -> None:
    # ``ObjectMeta(name="V")`` is how pypsrp passes a command parameter's value (the
    # Operations list); pypsrp keeps the inferred tag on the metadata, and so must we.
    ours_meta = ObjectMeta(name=name) if name else None
    theirs_meta = ObjectMeta(name=name) if name else None
    ours = TolerantSerializer().serialize(value, ours_meta)
    theirs = Serializer().serialize(value, theirs_meta)
    assert ours is not None and theirs is not None
    assert ET.tostring(ours, encoding="unicode") == ET.tostring(theirs, encoding="unicode")
    if ours_meta is not None and theirs_meta is not None:
        assert ours_meta.tag == theirs_meta.tag


def test_writing_shares_type_names_with_the_objects_around_it() -> None:
    # Inside a larger message the TN RefIds continue from what pypsrp already wrote: a list
    # written after a hashtable refers back to nothing, a second hashtable to the first's TN.
    value = [{"a": [1, None]}, {"b": b"\x00", "c": uuid.UUID(int=5)}, [True, 1.5]]
    for serializer in (TolerantSerializer(), Serializer()):
        serializer.serialize("warm-up")
    ours = ET.tostring(TolerantSerializer().serialize(value), encoding="unicode")
    theirs = ET.tostring(Serializer().serialize(value), encoding="unicode")
    assert ours == theirs
    assert ours.count("<TNRef") == 3


def test_values_pypsrp_types_itself_still_go_to_pypsrp() -> None:
    # A pypsrp object inside a plain hashtable is written by pypsrp, RefIds continuing.
    def value() -> dict[str, Any]:
        obj = GenericComplexObject()
        obj.types = ["Raorch.Test"]
        obj.to_string = "seen"
        obj.adapted_properties = {"Name": "x"}
        return {"a": [1], "obj": obj}

    ours = ET.tostring(TolerantSerializer().serialize(value()), encoding="unicode")
    assert ours == ET.tostring(Serializer().serialize(value()), encoding="unicode")
    assert '<Obj RefId="2" N="Value"><TN RefId="2"><T>Raorch.Test</T>' in ours


escapable = st.text(alphabet="_xX0123456789AaFf\n\t\x00\x1f\x7f\u00e9\U0001f600 ", max_size=24)


@settings(max_examples=500, deadline=None)
@given(st.one_of(escapable, st.text(max_size=24)))
def test_strings_read_and_write_as_pypsrp_does(text: str) -> None:
    ours, theirs = TolerantSerializer(), Serializer()
    assert ours._serialize_string(text) == theirs._serialize_string(text)
    assert ours._deserialize_string(text) == theirs._deserialize_string(text)
    written = theirs._serialize_string(text)
    assert ours._deserialize_string(written) == theirs._deserialize_string(written) == text
