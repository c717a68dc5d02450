"""Hostile strings (tests/unit/test_injection.py's ``HOSTILE``: quotes of every kind, backticks,
``$(...)``, ``${}``, ``;``, ``|``, ``&``, newlines, CR, NUL, tabs, 10k characters, Cyrillic, CJK,
Arabic, emoji, ``<# #>``, here-string markers, ``--%``, ``%WINDIR%``...) sent to lab hosts over
real WinRM.

1. Through the transport (``HostSession.run``): each string as a registry value's name and data
   is stored literally on the host and reads back equal.
2. Through the rollout path (``run_host`` APPLY with a loaded playbook): each string the
   loader accepts becomes a helper account (added to the lab's directory, ``--accounts``) and
   a firewall program entry; on a legacy host it lands literally as the RAUnsolicit value
   name and data, in Administrators, and as the program list's value name and data.

In both, the lab's record of every pipeline shows raorch's constant batch script as the only
script text, with the strings only among the parameters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ADMINISTRATORS, FW_POLICY_KEY, RAU_KEY, lab_values

from raorch.engine.host import HostMode, run_host
from raorch.lab import LabHandle, running_lab
from raorch.models.errors import InputError
from raorch.models.load import load_inventory, load_playbook
from raorch.models.outcomes import Outcome, Stage
from raorch.models.remote import ReadValues, RegType, RegValue, SetValue
from raorch.transport.script import batch_script
from raorch.transport.session import HostSession

# The strings and playbook builder of tests/unit/test_injection.py (that directory is not on
# sys.path when this module is imported).
_spec = importlib.util.spec_from_file_location(
    "hostile_strings", Path(__file__).resolve().parents[1] / "unit" / "test_injection.py"
)
assert _spec is not None and _spec.loader is not None
_hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hostile)
HOSTILE: list[str] = _hostile.HOSTILE
helper_of = _hostile.helper_of
playbook_with = _hostile.playbook_with

KEY = "HKLM\\SOFTWARE\\raorch-injection"
PROGRAMS = f"{FW_POLICY_KEY}\\DomainProfile\\AuthorizedApplications\\List"


def scripts_seen(state: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        (command["script"], command["is_script"])
        for pipeline in state["runtime"]["log"]
        for command in pipeline["commands"]
    ]


def parameters_seen(state: dict[str, Any]) -> str:
    return repr([c["parameters"] for p in state["runtime"]["log"] for c in p["commands"]])


def accepted(index: int, tmp_path: Path) -> Path | None:
    path = tmp_path / f"hostile-{index}.yaml"
    data = playbook_with(HOSTILE[index], index)
    data["solicited_remote_assistance"] = "ignore"  # every lab host is eligible
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    try:
        load_playbook(path)
    except InputError:
        return None  # refused where written (tests/unit/test_injection.py checks the location)
    return path


@pytest.fixture(scope="module")
def accepted_playbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    found = {i: accepted(i, tmp) for i in range(len(HOSTILE))}
    return {i: p for i, p in found.items() if p is not None}


@pytest.fixture(scope="module")
def fleet(accepted_playbooks: dict[int, Path]) -> Any:
    accounts = [helper_of(HOSTILE[i]) for i in accepted_playbooks]
    with running_lab(
        hosts=len(HOSTILE) + 1, mix="xp-pro:1", languages="en-US:1", accounts=accounts
    ) as lab:
        yield lab


def test_registry_names_and_data_are_stored_literally(fleet: LabHandle) -> None:
    lab = fleet
    target = load_inventory(lab.inventory_path).targets[lab.hosts[-1]]
    ops = [SetValue(KEY, text, RegValue(RegType.SZ, text)) for text in HOSTILE]
    with HostSession(target, lab.password) as session:
        results = session.run([*ops, ReadValues(KEY, tuple(HOSTILE))], Stage.APPLY)
    assert [r.ok for r in results] == [True] * len(results), [r.error for r in results]
    stored = lab_values(lab.state(target.name), KEY)
    for text in HOSTILE:
        assert stored.get(text) == {"type": "REG_SZ", "data": text}, repr(text[:40])
    assert len(stored) == len(HOSTILE)
    # read back through the transport, equal too
    read = results[-1].data
    assert read is not None and read.exists  # type: ignore[union-attr]
    for text in HOSTILE:
        assert read.values[text] == RegValue(RegType.SZ, text)  # type: ignore[union-attr]
    state = lab.state(target.name)
    assert set(scripts_seen(state)) == {(batch_script(), True)}
    assert HOSTILE[-1] in parameters_seen(state) or "server" in parameters_seen(state)


def test_rollout_path_stores_accepted_strings_literally(
    fleet: LabHandle, accepted_playbooks: dict[int, Path]
) -> None:
    lab = fleet
    inventory = load_inventory(lab.inventory_path)
    refused = len(HOSTILE) - len(accepted_playbooks)
    print(
        f"\n{len(HOSTILE)} hostile strings: {len(accepted_playbooks)} accepted, {refused} refused"
    )
    assert accepted_playbooks and refused  # both paths are exercised
    for index, path in accepted_playbooks.items():
        text = HOSTILE[index]
        host = lab.hosts[index]
        playbook = load_playbook(path)
        report = run_host(
            inventory.targets[host], lab.password, playbook, inventory.domains, HostMode.APPLY
        )
        assert report.outcome is Outcome.CHANGED, (repr(text[:40]), report.reason)
        state = lab.state(host)
        helper = helper_of(text)
        helpers = lab_values(state, RAU_KEY)
        assert helpers.get(helper) == {"type": "REG_SZ", "data": helper}, repr(text[:40])
        members = {m["name"] for m in state["groups"][ADMINISTRATORS]["members"]}
        assert helper in members, repr(text[:40])
        programs = lab_values(state, PROGRAMS)
        path_name = f"%WINDIR%\\{text}.exe"
        assert programs.get(path_name) == {
            "type": "REG_SZ",
            "data": f"{path_name}:*:Enabled:Remote Assistance",
        }, repr(text[:40])
        named = f"%WINDIR%\\x{index}.exe"
        assert programs[named]["data"] == f"{named}:*:Enabled:{text}"
        assert set(scripts_seen(state)) == {(batch_script(), True)}, repr(text[:40])
