"""--limit: comma-separated fnmatch patterns on host names."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raorch.cli.main import main
from raorch.models.errors import InputError
from raorch.planning.selection import (
    PATTERN_HINT,
    parse_limit,
    require_matches,
    select_hosts,
    unmatched_patterns,
)

NAMES = ["ws-01", "ws-02", "srv-01", "XP-LEGACY"]


def test_no_limit_selects_everything_in_order() -> None:
    assert select_hosts(NAMES, None) == NAMES
    assert select_hosts(NAMES, " , ") == NAMES


def test_patterns_are_comma_separated_and_case_insensitive() -> None:
    assert parse_limit(" ws-0?, srv-* ") == ("ws-0?", "srv-*")
    assert select_hosts(NAMES, "srv-*,ws-02") == ["ws-02", "srv-01"]
    assert select_hosts(NAMES, "xp-*") == ["XP-LEGACY"]


def test_patterns_that_select_nothing_are_reported() -> None:
    assert unmatched_patterns(NAMES, "ws-*,wz-*") == ("wz-*",)
    assert unmatched_patterns(NAMES, None) == ()


def test_a_limit_that_selects_nothing_is_one_input_error() -> None:
    require_matches(NAMES, "ws-*,XP-*", "of this run")  # every pattern selects a host
    require_matches(NAMES, None, "of this run")
    with pytest.raises(InputError) as error:
        require_matches(NAMES, "ws-*,wz-*,zz", "of this run")
    (problem,) = error.value.problems
    assert problem.location.file == "--limit"
    assert problem.message == "pattern(s) wz-*, zz match no host of this run"
    assert problem.hint == PATTERN_HINT


# One wording of a bad --wave and of a --limit that selects nothing, whatever the command
# (plan, verify, rollout each had their own copy). Refused before any host is contacted.
CORP = Path(__file__).resolve().parents[2] / "inventories" / "corp.yaml"


@pytest.mark.parametrize("command", ["plan", "verify", "rollout"])
def test_every_command_says_a_bad_wave_the_same_way(command: str, tmp_path: Path) -> None:
    env = {"RAORCH_HOME": str(tmp_path / "home"), "RAORCH_PASSWORD": "x"}
    args = [command, "--inventory", str(CORP), "--wave", "nosuch"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert "there is no wave named 'nosuch'" in result.output
    assert "the inventory's waves are: canary, pilot, broad" in result.output


@pytest.mark.parametrize(
    ("command", "among"),
    [("plan", "of wave canary"), ("verify", "of wave canary"), ("rollout", "of this run")],
)
def test_every_command_says_an_empty_limit_the_same_way(
    command: str, among: str, tmp_path: Path
) -> None:
    env = {"RAORCH_HOME": str(tmp_path / "home"), "RAORCH_PASSWORD": "x"}
    args = [command, "--inventory", str(CORP), "--wave", "canary", "--limit", "nomatch-*"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"pattern(s) nomatch-* match no host {among}" in result.output
