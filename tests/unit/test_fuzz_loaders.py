"""Feed the loaders thousands of mutated and generated files: each one either loads or raises
InputError whose every problem has a file and a line. Nothing else may escape (no KeyError,
no pydantic ValidationError, no yaml error, no RecursionError)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raorch.models.errors import InputError
from raorch.models.load import load_inventory, load_playbook

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = (ROOT / "inventories" / "corp.yaml").read_text(encoding="utf-8")
PLAYBOOK = (ROOT / "playbooks" / "offer-remote-assistance.yaml").read_text(encoding="utf-8")

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Values that are wrong in interesting ways for some field somewhere.
VALUES = [
    "0",
    "-1",
    "65536",
    "101",
    "1.5",
    ".nan",
    ".inf",
    "true",
    "no",
    "null",
    "~",
    "[]",
    "{}",
    "''",
    "'x'",
    "25%",
    "0%",
    "abc",
    "hunter2",
    "env:",
    "file:",
    "prompt",
    "[a, b]",
    "{a: 1}",
    "'CORP\\x'",
    "CORP\\\\x",
    "*a",
    "&a 1",
    "!!str 5",
    "!!binary aGk=",
    "'135:TCP:*:On:x'",
    "2001-01-01",
    "0x1F",
    "1e3",
    '"\\t"',
    "|\n  text",
    "- x",
]

JUNK_LINES = ["", "#", "- ", ":", "  x: 1", "waves:", "hosts:", "  - {name: x}", "\t", "? a"]


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "value", "insert", "indent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            head, sep, _ = lines[i].partition(": ")
            new = draw(st.sampled_from(VALUES) | st.text(max_size=12))
            lines[i] = f"{head}{sep or ': '}{new}"
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(JUNK_LINES) | st.text(max_size=20)))
        else:
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


def check(loader_result: object, exc: InputError | None) -> None:
    if exc is None:
        return
    assert exc.problems
    for problem in exc.problems:
        assert problem.location.file
        assert problem.location.line is not None, str(problem)
        assert problem.message


def load_or_problem(loader: object, path: Path) -> None:
    try:
        result = loader(path)  # type: ignore[operator]
    except InputError as exc:
        check(None, exc)
        return
    check(result, None)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=mutated(INVENTORY))
def test_mutated_inventories(work: Path, text: str) -> None:
    path = work / "inv.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        inv = load_inventory(path)
    except InputError as exc:
        check(None, exc)
        return
    # What loads is coherent: every target in exactly one wave, no wave empty.
    placed = [h for w in inv.waves for h in w.hosts]
    assert sorted(placed) == sorted(inv.targets) and len(placed) == len(set(placed))
    assert all(w.hosts for w in inv.waves)


@FUZZ
@given(text=mutated(PLAYBOOK))
def test_mutated_playbooks(work: Path, text: str) -> None:
    path = work / "pb.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_problem(load_playbook, path)


# Arbitrary YAML-able structures, some shaped like the real files' keys.
KEYS = st.sampled_from(
    [
        "playbook",
        "domains",
        "defaults",
        "connection",
        "credentials",
        "groups",
        "hosts",
        "waves",
        "name",
        "rest",
        "batch",
        "port",
        "scheme",
        "password",
        "username",
        "address",
        "offer_remote_assistance",
        "helpers",
        "firewall",
        "legacy",
        "ports",
        "programs",
        "x",
    ]
)
LEAVES = st.none() | st.booleans() | st.integers(-10, 70000) | st.floats() | st.text(max_size=8)
TREES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tree=TREES)
def test_generated_structures(work: Path, tree: object) -> None:
    path = work / "gen.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    load_or_problem(load_inventory, path)
    load_or_problem(load_playbook, path)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert "aliases expand to more than" in info.value.problems[0].message
    assert info.value.problems[0].location.line is not None


def test_the_alias_guard_counts_expansions_not_written_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large inventory written out in full is legitimate: 654,216 hosts were refused as
    "too many values (nested aliases?)" when the guard counted every value."""
    from raorch.models import yamlsource

    monkeypatch.setattr(yamlsource, "_MAX_ALIAS_VALUES", 10)
    plain = tmp_path / "plain.yaml"
    plain.write_text("values: [" + ", ".join(str(i) for i in range(1000)) + "]\n")
    assert len(yamlsource.read_yaml(plain).data["values"]) == 1000
    aliased = tmp_path / "aliased.yaml"
    aliased.write_text("a: &a [1, 2, 3, 4, 5]\nb: [*a, *a]\n")  # 2 x (list + 5 values) = 12
    with pytest.raises(InputError) as info:
        yamlsource.read_yaml(aliased)
    assert "aliases expand to more than 10 values" in info.value.problems[0].message
