"""load_inventory: one test per rule, asserting the message and the location (line, column,
field path). Expected positions are found in the test's own YAML text by ``pos``, so each test
states *where* the error must point, independently of the loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raorch.models.errors import InputError, Problem
from raorch.models.inventory import AuthMethod, GateAction, Scheme, SecretKind
from raorch.models.load import load_inventory, resolve_playbook_path

BASE = """\
playbook: pb.yaml
domains: [CORP]
defaults:
  connection:
    scheme: https
  credentials:
    username: 'CORP\\svc'
    password: env:RAORCH_PASSWORD
groups:
  g1:
    hosts: [h2, h3]
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
  h3: {address: 10.0.0.3}
  h4: {address: 10.0.0.4}
waves:
  - name: canary
    hosts: [h1]
    max_fail_percentage: 0
  - name: pilot
    groups: [g1]
    max_fail_percentage: 10
    batch: 25%
  - name: broad
    rest: true
    max_fail_percentage: 5
"""


def pos(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of ``needle`` in ``text``."""
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    before = text[:at]
    return before.count("\n") + 1, at - (before.rfind("\n") + 1) + 1


def write(tmp_path: Path, text: str, name: str = "inv.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(InputError) as info:
        load_inventory(write(tmp_path, text))
    return info.value.problems


def only_problem(tmp_path: Path, text: str) -> Problem:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def assert_at(problem: Problem, text: str, needle: str, path: str, nth: int = 1) -> None:
    line, column = pos(text, needle, nth)
    assert (problem.location.line, problem.location.column) == (line, column), str(problem)
    assert problem.location.path == path
    assert problem.location.file.endswith("inv.yaml")


def edit(old: str, new: str, count: int = 1) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, count)


# ---------------------------------------------------------------- the valid base


def test_base_loads_with_defaults_applied(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, BASE))
    assert [w.name for w in inv.waves] == ["canary", "pilot", "broad"]
    assert inv.wave("canary") is not None and inv.wave("canary").hosts == ("h1",)  # type: ignore[union-attr]
    assert inv.waves[1].hosts == ("h2", "h3")
    assert inv.waves[1].batch is not None and inv.waves[1].batch.percent == 25.0
    assert inv.waves[2].hosts == ("h4",)  # rest: everything not named elsewhere
    assert inv.waves[2].on_gate_failure is GateAction.HALT
    t = inv.targets["h1"]
    assert t.wave == "canary" and t.address == "10.0.0.1"
    assert t.connection.scheme is Scheme.HTTPS and t.connection.port == 5986
    assert t.connection.auth is AuthMethod.NTLM and t.connection.cert_validation
    assert (t.connection.connect_timeout, t.connection.operation_timeout) == (10.0, 60.0)
    assert t.credentials.username == "CORP\\svc"
    assert t.credentials.password.kind is SecretKind.ENV
    assert t.credentials.password.target == "RAORCH_PASSWORD"
    assert inv.path == str(tmp_path / "inv.yaml")
    assert inv.playbook == str(tmp_path / "pb.yaml")


def test_every_host_in_exactly_one_wave(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, BASE))
    placed = [h for w in inv.waves for h in w.hosts]
    assert sorted(placed) == sorted(inv.targets) and len(placed) == len(set(placed))


def test_rest_wave_keeps_inventory_order_and_may_come_first(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]\n", "    hosts: [h3]\n")
    text = text.replace("    groups: [g1]\n", "    hosts: [h2]\n")
    inv = load_inventory(write(tmp_path, text))
    assert inv.waves[2].hosts == ("h1", "h4")


def test_overlapping_groups_in_one_wave_are_fine(tmp_path: Path) -> None:
    text = edit("  g1:\n", "  g0:\n    hosts: [h2]\n  g1:\n")
    text = text.replace("groups: [g1]", "groups: [g0, g1]")
    inv = load_inventory(write(tmp_path, text))
    assert inv.waves[1].hosts == ("h2", "h3")


# ---------------------------------------------------------------- YAML level


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    text = edit("  h2: {address: 10.0.0.2}", "  h2: {address: 10.0.0.2")
    p = only_problem(tmp_path, text)
    assert "YAML syntax error" in p.message
    assert p.location.line == pos(text, "  h3:")[0]
    assert p.location.column is not None


def test_duplicate_key_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    text = edit(
        "  h4: {address: 10.0.0.4}\n", "  h4: {address: 10.0.0.4}\n  h1: {address: 10.9.9.9}\n"
    )
    p = only_problem(tmp_path, text)
    assert_at(p, text, "h1: {address: 10.9.9.9}", "hosts.h1")
    assert f"duplicate key 'h1' (first at line {pos(text, 'h1: {')[0]})" in p.message


def test_duplicate_key_in_flow_mapping(tmp_path: Path) -> None:
    text = edit("  h1: {address: 10.0.0.1}", "  h1: {address: 10.0.0.1, address: 10.0.0.9}")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "address: 10.0.0.9", "hosts.h1.address")
    assert "duplicate key 'address'" in p.message


def test_empty_file(tmp_path: Path) -> None:
    p = only_problem(tmp_path, "# nothing\n")
    assert "empty" in p.message and p.location.line == 1


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    p = only_problem(tmp_path, "- a\n- b\n")
    assert "mapping" in p.message and (p.location.line, p.location.column) == (1, 1)


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    text = edit("  h1: {address: 10.0.0.1}", "  h1: {<<: {address: 10.0.0.1}}")
    p = problems_of(tmp_path, text)[0]
    assert "merge keys" in p.message
    assert (p.location.line, p.location.column) == pos(text, "<<")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = edit("address: 10.0.0.1", "address: !!python/object/apply:os.getpid []")
    p = only_problem(tmp_path, text)
    assert "unsupported YAML tag" in p.message
    assert_at(p, text, "!!python", "hosts.h1.address")


def test_control_character_is_located(tmp_path: Path) -> None:
    text = edit("address: 10.0.0.3", "address: 10.0\x07.0.3")
    p = only_problem(tmp_path, text)
    assert "U+0007" in p.message
    assert (p.location.line, p.location.column) == pos(text, "\x07")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_bytes(BASE.encode() + b"# caf\xe9\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    problem = info.value.problems[0]
    assert "not UTF-8" in problem.message and "0xe9" in problem.message
    # The line of the comment after BASE, the column of the bad byte after "# caf".
    assert (problem.location.line, problem.location.column) == (BASE.count("\n") + 1, 6)
    assert f"{path}:{BASE.count(chr(10)) + 1}:6:" in str(problem)


def test_not_utf8_column_counts_characters_not_bytes(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    # A BOM, then "ü" (two bytes) before the Windows-1252 byte on line 2.
    path.write_bytes(b"\xef\xbb\xbfdomains: [CORP]\n# \xc3\xbc \x80\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    location = info.value.problems[0].location
    assert (location.line, location.column) == (2, 5)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "nope.yaml")
    assert info.value.problems[0].message == "file not found"
    assert info.value.problems[0].location.file.endswith("nope.yaml")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path)
    assert "directory" in info.value.problems[0].message


def test_keys_are_names_even_when_yaml_would_read_numbers(tmp_path: Path) -> None:
    text = edit("  h4: {address: 10.0.0.4}", "  4: {address: 10.0.0.4}\n  yes: {address: 10.0.0.5}")
    inv = load_inventory(write(tmp_path, text))
    assert inv.wave("broad").hosts == ("4", "yes")  # type: ignore[union-attr]


# ---------------------------------------------------------------- shape


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    text = edit("  connection:\n    scheme: https", "  connection:\n    schema: https")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "schema", "defaults.connection.schema")
    assert p.message == "unknown key 'schema'"
    assert p.hint.startswith("did you mean 'scheme'?")
    assert "cert_validation" in p.hint  # the allowed keys are listed


def test_unknown_top_level_key_without_close_match_lists_allowed(tmp_path: Path) -> None:
    text = BASE + "zzz: 1\n"
    p = only_problem(tmp_path, text)
    assert_at(p, text, "zzz", "zzz")
    assert "did you mean" not in p.hint
    assert p.hint == "allowed: playbook, domains, defaults, groups, hosts, waves"


def test_unknown_key_in_a_wave(tmp_path: Path) -> None:
    text = edit("    max_fail_percentage: 10", "    max_fail_percentag: 10")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "max_fail_percentag:", "waves[1].max_fail_percentag")
    assert p.hint.startswith("did you mean 'max_fail_percentage'?")


def test_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    text = edit("  h2: {address: 10.0.0.2}", "  h2: {}")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "{}", "hosts.h2.address")
    assert p.message == "missing required key 'address'"


def test_wrong_type(tmp_path: Path) -> None:
    text = edit("    scheme: https\n", "    scheme: https\n    port: eighty\n")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "eighty", "defaults.connection.port")
    assert p.message == "must be a whole number"


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = edit("  h3: {address: 10.0.0.3}", "  h3: 10.0.0.3")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "10.0.0.3", "hosts.h3")
    assert "mapping" in p.message


@pytest.mark.parametrize("port", ["0", "65536", "-5"])
def test_port_out_of_range(tmp_path: Path, port: str) -> None:
    text = edit(
        "  h1: {address: 10.0.0.1}", f"  h1: {{address: 10.0.0.1, connection: {{port: {port}}}}}"
    )
    p = only_problem(tmp_path, text)
    assert_at(p, text, port + "}", "hosts.h1.connection.port")
    assert "between 1 and 65535" in p.message


def test_port_true_is_not_one(tmp_path: Path) -> None:
    text = edit("    scheme: https\n", "    scheme: https\n    port: true\n")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "true", "defaults.connection.port")
    assert "true/false" in p.message


@pytest.mark.parametrize("value", ["0", "-1", ".inf", ".nan"])
def test_timeouts_must_be_positive(tmp_path: Path, value: str) -> None:
    text = edit("    scheme: https\n", f"    scheme: https\n    connect_timeout: {value}\n")
    p = only_problem(tmp_path, text)
    assert_at(p, text, value + "\n", "defaults.connection.connect_timeout")
    assert "greater than 0" in p.message


@pytest.mark.parametrize("value", ["-1", "100.5", "101", ".nan"])
def test_percentage_outside_0_100(tmp_path: Path, value: str) -> None:
    text = edit("max_fail_percentage: 10", f"max_fail_percentage: {value}")
    p = only_problem(tmp_path, text)
    assert_at(p, text, value + "\n", "waves[1].max_fail_percentage")
    assert p.message == "max_fail_percentage must be between 0 and 100"


@pytest.mark.parametrize("value", ["0", "-3", "0%", "150%", "abc", "'25'"])
def test_batch_must_be_positive_count_or_percentage(tmp_path: Path, value: str) -> None:
    text = edit("batch: 25%", f"batch: {value}")
    p = only_problem(tmp_path, text)
    line, column = pos(text, f"batch: {value}")
    assert (p.location.line, p.location.column) == (line, column + len("batch: "))
    assert p.location.path == "waves[1].batch"
    assert "batch must be" in p.message


@pytest.mark.parametrize(("value", "size", "percent"), [("7", 7, None), ("12.5%", None, 12.5)])
def test_batch_forms(tmp_path: Path, value: str, size: int | None, percent: float | None) -> None:
    inv = load_inventory(write(tmp_path, edit("batch: 25%", f"batch: {value}")))
    batch = inv.waves[1].batch
    assert batch is not None and (batch.size, batch.percent) == (size, percent)


def test_bad_wave_name(tmp_path: Path) -> None:
    text = edit("name: pilot", "name: 'pilot wave'")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "'pilot wave'", "waves[1].name")
    assert "wave name" in p.message


def test_domains_must_not_be_empty(tmp_path: Path) -> None:
    text = edit("domains: [CORP]", "domains: []")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "[]", "domains")
    assert "at least one domain" in p.message


def test_several_shape_problems_are_reported_together(tmp_path: Path) -> None:
    text = edit("max_fail_percentage: 10", "max_fail_percentage: 200").replace(
        "    scheme: https", "    scheme: ftp"
    )
    problems = problems_of(tmp_path, text)
    paths = sorted(p.location.path for p in problems)
    assert paths == ["defaults.connection.scheme", "waves[1].max_fail_percentage"]
    scheme = next(p for p in problems if p.location.path.endswith("scheme"))
    assert "'http' or 'https'" in scheme.message


# ---------------------------------------------------------------- secrets in the file


def test_literal_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = edit("password: env:RAORCH_PASSWORD", "password: Winter2024!")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "Winter2024!", "defaults.credentials.password")
    assert "not a literal password" in p.message
    assert "env:NAME" in p.hint and "file:PATH" in p.hint and "prompt" in p.hint
    assert "Winter2024" not in str(p)


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("env:", "environment variable name"),
        ("env:1X", "environment variable name"),
        ("file:", "needs a path"),
        ("keyring:", "service name"),
    ],
)
def test_malformed_references(tmp_path: Path, ref: str, says: str) -> None:
    text = edit("password: env:RAORCH_PASSWORD", f"password: '{ref}'")
    p = only_problem(tmp_path, text)
    assert_at(p, text, f"'{ref}'", "defaults.credentials.password")
    assert says in p.message


def test_file_reference_is_anchored_at_the_inventory_and_not_read(tmp_path: Path) -> None:
    # Loading does not resolve secrets: the file need not exist yet.
    text = edit("password: env:RAORCH_PASSWORD", "password: file:secrets/pw")
    inv = load_inventory(write(tmp_path, text))
    ref = inv.targets["h1"].credentials.password
    assert ref.kind is SecretKind.FILE and ref.target == str(tmp_path / "secrets" / "pw")


def test_host_without_credentials(tmp_path: Path) -> None:
    text = edit(
        "  credentials:\n    username: 'CORP\\svc'\n    password: env:RAORCH_PASSWORD\n", ""
    ).replace(
        "  h2: {address: 10.0.0.2}",
        "  h2: {address: 10.0.0.2, credentials: {username: 'CORP\\x', password: prompt}}",
    )
    problems = problems_of(tmp_path, text)
    assert [p.location.path for p in problems] == ["hosts.h1", "hosts.h3", "hosts.h4"]
    assert_at(problems[0], text, "h1:", "hosts.h1")
    assert problems[0].message == "host 'h1' has no credentials"


# ---------------------------------------------------------------- waves


def test_host_named_twice_across_waves(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]", "    hosts: [h1, h2]")
    p = only_problem(tmp_path, text)
    # h2 is first placed by canary's hosts; pilot's group g1 names it again.
    assert_at(p, text, "g1]", "waves[1].groups[0]")
    assert "host 'h2' is named twice (first at waves[0].hosts[1], wave 'canary')" in p.message


def test_host_listed_twice_in_one_wave(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]", "    hosts: [h1, h1]")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "h1]", "waves[0].hosts[1]")
    assert "named twice" in p.message


def test_unknown_host_in_wave(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]", "    hosts: [h11]")
    problems = problems_of(tmp_path, text)
    p = next(q for q in problems if q.location.path == "waves[0].hosts[0]")
    assert_at(p, text, "h11", "waves[0].hosts[0]")
    assert p.message == "unknown host 'h11'" and p.hint == "did you mean 'h1'?"
    # ... and canary is then empty, also reported.
    assert any(q.message == "wave 'canary' has no hosts" for q in problems)


def test_unknown_group_in_wave(tmp_path: Path) -> None:
    text = edit("    groups: [g1]", "    groups: [g1, floor9]")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "floor9", "waves[1].groups[1]")
    assert p.message == "unknown group 'floor9'"


def test_unknown_host_in_group(tmp_path: Path) -> None:
    text = edit("    hosts: [h2, h3]", "    hosts: [h2, h3, hx]")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "hx", "groups.g1.hosts[2]")
    assert p.message == "unknown host 'hx' in group 'g1'"


def test_duplicate_wave_name(tmp_path: Path) -> None:
    text = edit("name: broad", "name: canary")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "canary", "waves[2].name", nth=2)
    assert p.message == "duplicate wave name 'canary' (also waves[0])"


def test_two_rest_waves(tmp_path: Path) -> None:
    text = BASE + "  - name: last\n    rest: true\n"
    problems = problems_of(tmp_path, text)
    p = next(q for q in problems if q.location.path == "waves[3].rest")
    assert_at(p, text, "true", "waves[3].rest", nth=2)
    assert "a second rest wave" in p.message


def test_host_in_no_wave_without_rest(tmp_path: Path) -> None:
    text = BASE.replace("  - name: broad\n    rest: true\n    max_fail_percentage: 5\n", "")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "h4:", "hosts.h4")
    assert p.message == "host 'h4' is in no wave"
    assert "rest: true" in p.hint


def test_empty_wave(tmp_path: Path) -> None:
    text = edit("  - name: pilot\n    groups: [g1]\n", "  - name: pilot\n")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "name: pilot", "waves[1]")
    assert p.message == "wave 'pilot' has no hosts"


def test_rest_wave_with_nothing_left_is_empty(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]", "    hosts: [h1, h4]")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "name: broad", "waves[2]")
    assert p.message == "wave 'broad' has no hosts"


def test_wave_problems_are_all_reported_in_file_order(tmp_path: Path) -> None:
    text = edit("    hosts: [h1]", "    hosts: [hx]").replace("name: broad", "name: pilot")
    problems = problems_of(tmp_path, text)
    lines = [p.location.line or 0 for p in problems]
    assert lines == sorted(lines) and len(problems) >= 3


# ---------------------------------------------------------------- connections


def test_port_follows_scheme(tmp_path: Path) -> None:
    text = edit(
        "  h2: {address: 10.0.0.2}", "  h2: {address: 10.0.0.2, connection: {scheme: http}}"
    )
    text = text.replace("    scheme: https\n", "    scheme: https\n    port: 5999\n")
    inv = load_inventory(write(tmp_path, text))
    assert inv.targets["h1"].connection.port == 5999  # explicit default port kept
    # A host that switches scheme gets that scheme's standard port, not the defaults' 5999.
    assert inv.targets["h2"].connection.port == 5985
    assert inv.targets["h2"].connection.scheme is Scheme.HTTP


def test_default_port_without_any_port(tmp_path: Path) -> None:
    text = edit("    scheme: https", "    scheme: http")
    inv = load_inventory(write(tmp_path, text))
    assert {t.connection.port for t in inv.targets.values()} == {5985}


def test_basic_over_http_needs_insecure(tmp_path: Path) -> None:
    text = edit(
        "  h3: {address: 10.0.0.3}",
        "  h3: {address: 10.0.0.3, connection: {scheme: http, auth: basic}}",
    )
    p = only_problem(tmp_path, text)
    assert_at(p, text, "basic", "hosts.h3.connection.auth")
    assert p.message == (
        "host 'h3': Basic authentication over plain http sends the password in clear text"
    )
    assert "insecure: true" in p.hint
    ok = text.replace("auth: basic}", "auth: basic, insecure: true}")
    assert load_inventory(write(tmp_path, ok)).targets["h3"].connection.insecure


def test_cert_validation_off_needs_insecure_and_is_reported_once(tmp_path: Path) -> None:
    text = edit("    scheme: https\n", "    scheme: https\n    cert_validation: false\n")
    p = only_problem(tmp_path, text)  # one problem for the default, not one per host
    assert_at(p, text, "false", "defaults.connection.cert_validation")
    assert p.message.startswith("cert_validation: false accepts any server certificate")
    assert "insecure: true" in p.hint
    ok = text.replace("cert_validation: false\n", "cert_validation: false\n    insecure: true\n")
    inv = load_inventory(write(tmp_path, ok))
    assert not inv.targets["h1"].connection.cert_validation


def test_certificate_auth_needs_https_and_key_files(tmp_path: Path) -> None:
    text = edit(
        "  h1: {address: 10.0.0.1}", "  h1: {address: 10.0.0.1, connection: {auth: certificate}}"
    )
    problems = problems_of(tmp_path, text)
    assert {p.message for p in problems} == {
        "host 'h1': auth: certificate needs certificate_pem",
        "host 'h1': auth: certificate needs certificate_key_pem",
    }
    assert_at(problems[0], text, "certificate}", "hosts.h1.connection.auth")


CERT_ONLY = """\
playbook: pb.yaml
domains: [CORP]
defaults:
  connection: {scheme: https, auth: certificate, certificate_pem: c.pem, certificate_key_pem: k.pem}
hosts:
  h1: {address: 10.0.0.1}
  h2:
    address: 10.0.0.2
    connection: {auth: ntlm}
waves:
  - name: all
    rest: true
"""


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"


def test_certificate_auth_needs_no_credentials_but_other_auth_does(tmp_path: Path) -> None:
    # The client certificate is the identity: no user name, no password to give.
    (tmp_path / "c.pem").write_text(CERT)
    (tmp_path / "k.pem").write_text(KEY)
    problems = problems_of(tmp_path, CERT_ONLY)
    assert [p.message for p in problems] == ["host 'h2' has no credentials"]
    inv = load_inventory(
        write(
            tmp_path,
            CERT_ONLY.replace("  h2:\n    address: 10.0.0.2\n    connection: {auth: ntlm}\n", ""),
        )
    )
    target = inv.targets["h1"]
    assert target.credentials is None
    assert target.connection.auth is AuthMethod.CERTIFICATE
    assert target.connection.certificate_pem == str(tmp_path / "c.pem")


def test_relative_paths_are_anchored_at_the_inventory(tmp_path: Path) -> None:
    sub = tmp_path / "inv"
    sub.mkdir()
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_text(CERT)
    text = edit("    scheme: https\n", "    scheme: https\n    ca_bundle: ../pki/ca.pem\n")
    text = text.replace("playbook: pb.yaml", "playbook: ../playbooks/pb.yaml")
    inv = load_inventory(write(sub, text))
    assert inv.targets["h1"].connection.ca_bundle == str(tmp_path / "pki" / "ca.pem")
    assert inv.playbook == str(tmp_path / "playbooks" / "pb.yaml")
    assert os.path.isabs(inv.path)


# ---------------------------------------------------------------- Kerberos and Negotiate

KERBEROS = """\
playbook: pb.yaml
domains: [CORP]
defaults:
  connection: {scheme: https, auth: kerberos}
  kerberos: {realm: CORP.EXAMPLE.COM, kdc: 'dc1.corp.example.com:8888'}
hosts:
  ws1: {address: ws1.corp.example.com}
  ws2: {address: 10.0.0.2, connection: {spn_host: ws2.corp.example.com}}
  ws3:
    address: ws3.corp.example.com
    connection: {auth: negotiate}
    credentials: {username: 'CORP\\ops'}
  ws4:
    address: ws4.corp.example.com
    credentials: {username: 'svc@CORP.EXAMPLE.COM', password: env:PW}
waves:
  - {name: all, rest: true}
"""


def test_kerberos_fields_resolve(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, KERBEROS))
    assert inv.kerberos is not None
    assert (inv.kerberos.realm, inv.kerberos.kdc_host, inv.kerberos.kdc_port) == (
        "CORP.EXAMPLE.COM",
        "dc1.corp.example.com",
        8888,
    )
    ws1, ws2, ws3, ws4 = (inv.targets[h] for h in ("ws1", "ws2", "ws3", "ws4"))
    # No credentials at all: the default principal of the operator's ticket cache.
    assert ws1.credentials is None
    assert ws1.spn_host == "ws1.corp.example.com"  # the address, by default
    assert ws2.spn_host == "ws2.corp.example.com"
    assert ws2.connection.spn_host == "ws2.corp.example.com"
    # A user name without a password: that account's ticket from the cache.
    assert ws3.credentials is not None and ws3.credentials.password is None
    assert ws3.connection.auth is AuthMethod.NEGOTIATE
    assert ws4.credentials is not None and ws4.credentials.password is not None
    assert ws4.credentials.password.kind is SecretKind.ENV
    plain = load_inventory(write(tmp_path, KERBEROS.replace(":8888", "")))
    assert plain.kerberos is not None and plain.kerberos.kdc_port == 88
    v6 = load_inventory(write(tmp_path, KERBEROS.replace("dc1.corp.example.com:8888", "[::1]:88")))
    assert v6.kerberos is not None and v6.kerberos.kdc == "[::1]"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("realm: CORP.EXAMPLE.COM", "realm: corp.example.com", "realm must be the domain's DNS"),
        ("realm: CORP.EXAMPLE.COM", "realm: 'CORP EXAMPLE'", "realm must be the domain's DNS"),
        # krb5.conf is written from these values: no way to smuggle a line or a brace in.
        ("dc1.corp.example.com:8888", "dc1.corp.example.com\\n[realms]", "kdc must be HOST"),
        ("dc1.corp.example.com:8888", "dc1 }", "kdc must be HOST"),
        ("dc1.corp.example.com:8888", "dc1:0", "kdc must be HOST"),
        ("dc1.corp.example.com:8888", "dc1:70000", "kdc must be HOST"),
        ("spn_host: ws2.corp.example.com", "spn_host: HTTP/ws2", "spn_host must be a host name"),
        ("spn_host: ws2.corp.example.com", "spn_host: 'ws2@X'", "spn_host must be a host name"),
    ],
)
def test_kerberos_values_are_checked(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in KERBEROS
    text = KERBEROS.replace(old, new)
    problem = only_problem(tmp_path, text)
    assert problem.message.startswith(message), str(problem)
    assert problem.location.line == pos(text, new.split(":")[0])[0]


def test_spn_host_belongs_to_one_kerberos_host(tmp_path: Path) -> None:
    text = KERBEROS.replace("auth: kerberos}", "auth: kerberos, spn_host: all.corp.example.com}")
    problem = only_problem(tmp_path, text)
    assert problem.message == "spn_host names one host's SPN and cannot be a default for every host"
    assert_at(problem, text, "all.corp", "defaults.connection.spn_host")
    text = KERBEROS.replace(
        "{spn_host: ws2.corp.example.com}",
        "{auth: ntlm, spn_host: ws2.corp.example.com}, "
        "credentials: {username: u, password: prompt}",
    )
    problem = only_problem(tmp_path, text)
    assert problem.message == (
        "host 'ws2': spn_host is used by auth: kerberos and negotiate only (this connection "
        "uses ntlm)"
    )
    assert_at(problem, text, "ws2.corp.example.com}", "hosts.ws2.connection.spn_host")


def test_only_kerberos_can_go_without_a_password(tmp_path: Path) -> None:
    text = (
        KERBEROS.replace("auth: kerberos}", "auth: ntlm}")
        .replace(", connection: {spn_host: ws2.corp.example.com}", "")
        .replace("connection: {auth: negotiate}", "connection: {auth: ntlm}")
    )
    problems = problems_of(tmp_path, text)
    assert [p.message for p in problems] == [
        "host 'ws1' has no credentials",
        "host 'ws2' has no credentials",
        "host 'ws3': credentials need a password reference with auth: ntlm",
    ]
    assert "kerberos or negotiate can use the operator's ticket cache" in problems[0].hint
    assert_at(problems[2], text, "{username: 'CORP", "hosts.ws3.credentials")


# ---------------------------------------------------------------- resolve_playbook_path


def test_resolve_playbook_path(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, BASE))
    # --playbook wins, as given.
    assert resolve_playbook_path(inv, "other.yaml") == Path("other.yaml")
    # The inventory's playbook must exist; the error points at the playbook: line.
    with pytest.raises(InputError) as info:
        resolve_playbook_path(inv, None)
    p = info.value.problems[0]
    assert_at(p, BASE, "pb.yaml", "playbook")
    assert "not found" in p.message and "--playbook" in p.hint
    (tmp_path / "pb.yaml").write_text("name: x\n")
    assert resolve_playbook_path(inv, None) == tmp_path / "pb.yaml"


def test_no_playbook_anywhere(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, edit("playbook: pb.yaml\n", "")))
    with pytest.raises(InputError) as info:
        resolve_playbook_path(inv, None)
    p = info.value.problems[0]
    assert p.message == "no playbook given" and "--playbook" in p.hint
    assert p.location.path == "playbook" and p.location.file == str(tmp_path / "inv.yaml")


def test_sample_inventory_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    inv = load_inventory(root / "inventories" / "corp.yaml")
    assert [w.name for w in inv.waves] == ["canary", "pilot", "broad"]
    assert len(inv.targets) >= 10
    assert all(t.connection.auth is AuthMethod.NTLM for t in inv.targets.values())
    assert resolve_playbook_path(inv, None).is_file()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("not a certificate\n", "holds no PEM certificate"),
        (KEY, "holds no PEM certificate"),
    ],
)
def test_a_ca_bundle_that_is_missing_or_holds_no_certificate_is_located(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """Found at load with its file:line:column, not at run time as a network error on every
    host (issue: operator mistakes)."""
    if content is not None:
        (tmp_path / "ca.pem").write_text(content)
    text = edit("    scheme: https\n", "    scheme: https\n    ca_bundle: ca.pem\n")
    p = only_problem(tmp_path, text)  # once for the default, not once per host
    assert_at(p, text, "ca.pem", "defaults.connection.ca_bundle")
    assert p.message == f"ca_bundle {tmp_path / 'ca.pem'}: {problem}" or p.message.startswith(
        f"ca_bundle {tmp_path / 'ca.pem'}: {problem}"
    )
    assert "PEM" in p.hint


def test_a_ca_bundle_directory_and_an_unused_one_pass(tmp_path: Path) -> None:
    (tmp_path / "cas").mkdir()
    ok = edit("    scheme: https\n", "    scheme: https\n    ca_bundle: cas\n")
    assert load_inventory(write(tmp_path, ok)).targets["h1"].connection.ca_bundle
    # Over http no CA bundle is used: a wrong one there is not what breaks the run.
    unused = edit("    scheme: https\n", "    scheme: http\n    ca_bundle: nowhere.pem\n")
    assert load_inventory(write(tmp_path, unused, "unused.yaml")).targets["h1"]


def test_a_missing_client_key_is_located(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text(CERT)
    problems = problems_of(
        tmp_path,
        CERT_ONLY.replace("  h2:\n    address: 10.0.0.2\n    connection: {auth: ntlm}\n", ""),
    )
    assert [p.message for p in problems] == [
        f"certificate_key_pem {tmp_path / 'k.pem'}: no such file"
    ]


# ---------------------------------------------------------------- sites (issue 20: workers)


def test_site_defaults_then_group_then_host(tmp_path: Path) -> None:
    text = edit("    hosts: [h2, h3]\n", "    hosts: [h2, h3]\n    site: paris\n")
    text = text.replace("  h3: {address: 10.0.0.3}", "  h3: {address: 10.0.0.3, site: lyon}")
    inv = load_inventory(write(tmp_path, text))
    sites = {name: t.site for name, t in inv.targets.items()}
    assert sites == {"h1": "default", "h2": "paris", "h3": "lyon", "h4": "default"}


def test_bad_site_name_is_located(tmp_path: Path) -> None:
    text = edit("  h1: {address: 10.0.0.1}", "  h1: {address: 10.0.0.1, site: 'two words'}")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "'two words'", "hosts.h1.site")
    assert "site name" in p.message


def test_bad_group_site_name_is_located(tmp_path: Path) -> None:
    text = edit("    hosts: [h2, h3]\n", "    hosts: [h2, h3]\n    site: '-x'\n")
    p = only_problem(tmp_path, text)
    assert_at(p, text, "'-x'", "groups.g1.site")


def test_host_in_groups_of_two_sites_is_an_error_unless_it_names_its_own(tmp_path: Path) -> None:
    text = edit(
        "  g1:\n    hosts: [h2, h3]\n",
        "  g1:\n    hosts: [h2, h3]\n    site: paris\n  g2:\n    hosts: [h3]\n    site: lyon\n",
    )
    p = only_problem(tmp_path, text)
    assert_at(p, text, "h3: {", "hosts.h3")
    assert "g1 (paris), g2 (lyon)" in p.message and "hosts.h3.site" in p.hint
    own = text.replace("  h3: {address: 10.0.0.3}", "  h3: {address: 10.0.0.3, site: nice}")
    assert load_inventory(write(tmp_path, own)).targets["h3"].site == "nice"
    # two groups of the same site agree
    same = text.replace("site: lyon", "site: paris")
    assert load_inventory(write(tmp_path, same)).targets["h3"].site == "paris"
