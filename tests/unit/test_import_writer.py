"""The shared part of the importers: the wave proposal and the inventory writer, whose output
is loaded back with the real loader (``load_inventory``) and compared with the draft."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from raorch.importers import writer
from raorch.importers.draft import DraftConnection, DraftHost, DraftWave, InventoryDraft, Origin
from raorch.importers.waves import parse_waves, propose, spread
from raorch.importers.writer import ImportBug, render, scalar, write_inventory
from raorch.models.errors import InputError, RefusedError
from raorch.models.inventory import AuthMethod, Scheme, SecretKind, SecretRef
from raorch.models.load import load_inventory

ENV = SecretRef(SecretKind.ENV, "RAORCH_PASSWORD")


# ---------------------------------------------------------------- waves


def test_wave_spec_forms() -> None:
    shares = parse_waves("canary:1%, pilot:25 ,broad")
    assert [(s.name, s.count, s.percent) for s in shares] == [
        ("canary", None, 1.0),
        ("pilot", 25, None),
        ("broad", None, None),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty wave"),
        ("canary:1%,,broad", "empty wave"),
        ("canary,broad", "no size but is not the last"),
        ("canary:1%,broad:5%", "last wave 'broad' has a size"),
        ("canary:1%,canary", "named twice"),
        ("can ary:1%,broad", "not allowed"),
        ("canary:0%,broad", "not in 0-100"),
        ("canary:1.5,broad", "whole number"),
        ("canary:lots,broad", "not P% or N"),
    ],
)
def test_wave_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_waves(spec)
    [problem] = exc.value.problems
    assert problem.location.file == "--waves" and message in problem.message


def test_waves_round_up_take_one_host_at_least_and_drop_empty_ones() -> None:
    hosts = [(f"h{i}", None) for i in range(250)]
    proposal = propose(parse_waves("canary:1%,pilot:10%,broad"), hosts)
    assert [len(w.hosts) for w in proposal.waves] == [3, 25, 0]  # ceil(2.5), 25, the rest
    assert [w.max_fail_percentage for w in proposal.waves] == [0, 5, 5]
    tiny = propose(parse_waves("canary:1%,pilot:10%,broad"), [("only", None)])
    assert [w.name for w in tiny.waves] == ["canary"] and tiny.dropped == ("pilot", "broad")


def test_spread_takes_hosts_in_turn_from_each_group() -> None:
    hosts = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", None), ("b2", "b")]
    assert spread(hosts) == ["a1", "b1", "c1", "a2", "b2", "a3"]


# ---------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    "text",
    [
        "yes",
        "null",
        "1e3",
        "0x10",
        "10.0.0.1",
        "~",
        "",
        "a: b",
        "#x",
        "-",
        "CORP\\svc",
        'q"u',
        "émile",
        "tab\there",
        "line\nbreak",
        "nel\x85",
        "bom\ufeff",
        "emoji😀",
        "env:X",
        "[a]",
    ],
)
def test_scalars_read_back_as_written(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}")["k"] == text
    assert yaml.safe_load(f"{{k: {scalar(text)}}}")["k"] == text  # in flow style too


def test_numbers_and_booleans() -> None:
    assert [scalar(v) for v in (True, 5986, 10.0, 2.5)] == ["true", "5986", "10", "2.5"]


# ---------------------------------------------------------------- the writer


def conn(**kw: object) -> DraftConnection:
    base: dict[str, object] = {"scheme": Scheme.HTTPS, "port": 5986, "auth": AuthMethod.NTLM}
    base.update(kw)
    return DraftConnection(**base)  # type: ignore[arg-type]


def draft(*hosts: DraftHost, waves: tuple[DraftWave, ...] | None = None) -> InventoryDraft:
    return InventoryDraft(
        header=("test",),
        domains=("CORP",),
        hosts=hosts,
        groups=(),
        waves=waves or (DraftWave("all", (), True, 0),),
    )


def h(name: str, connection: DraftConnection | None = None, user: str = "CORP\\svc") -> DraftHost:
    return DraftHost(name, f"{name}.corp", connection or conn(), user, ENV, Origin("src:1"))


def test_mixed_connections_load_back_exactly(tmp_path: Path) -> None:
    ca = tmp_path / "certs" / "ca.pem"
    ca.parent.mkdir()
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    hosts = (
        h("a"),
        h("b"),
        # scheme switched, standard port: the port must be written (docs/inventory.md)
        h("xp", conn(scheme=Scheme.HTTP, port=5985)),
        # http on the defaults' https port: written alone, the scheme would mean 5985
        h("http5986", conn(scheme=Scheme.HTTP, port=5986)),
        h("odd", conn(port=5999, auth=AuthMethod.KERBEROS, operation_timeout=45)),
        h("ca", conn(ca_bundle=str(ca))),
        h("other", user="CORP\\ops"),
        h("insecure", conn(cert_validation=False, insecure=True)),
    )
    d = replace(
        draft(
            *hosts, waves=(DraftWave("canary", ("xp",), False, 0), DraftWave("rest", (), True, 5))
        ),
        playbook=str(tmp_path / "pb.yaml"),
    )
    out = tmp_path / "inv.yaml"
    loaded = write_inventory(d, out)
    assert writer.compare(d, loaded) == []
    assert loaded.targets["xp"].connection.port == 5985
    assert loaded.targets["ca"].connection.ca_bundle == str(ca)
    assert "ca_bundle: certs/ca.pem" in out.read_text()  # relative inside the output's folder
    assert loaded.targets["xp"].wave == "canary" and loaded.targets["a"].wave == "rest"
    assert loaded.playbook == str(tmp_path / "pb.yaml")


def test_a_wrong_text_is_never_put_in_place(tmp_path: Path) -> None:
    """The writer's own check: a text that loads but means something else (the scheme written
    without its port) is refused, and nothing is written."""
    d = draft(h("a"), h("b"), h("xp", conn(scheme=Scheme.HTTP, port=5985)))

    def forgetful(dr: InventoryDraft, path: Path) -> str:
        return render(dr, path).replace("scheme: http, port: 5985", "scheme: https")

    out = tmp_path / "inv.yaml"
    with pytest.raises(ImportBug) as exc:
        write_inventory(d, out, render_text=forgetful)
    assert "host xp: connection" in str(exc.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_unloadable_text_is_kept_aside_for_the_bug_report(tmp_path: Path) -> None:
    out = tmp_path / "inv.yaml"
    with pytest.raises(ImportBug) as exc:
        write_inventory(draft(h("a")), out, render_text=lambda dr, p: "domains: [CORP]\n")
    assert "does not load back" in str(exc.value) and not out.exists()
    assert (tmp_path / "inv.yaml.rejected").exists()


def test_existing_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "inv.yaml"
    out.write_text("mine\n")
    with pytest.raises(RefusedError):
        write_inventory(draft(h("a")), out)
    assert out.read_text() == "mine\n"
    write_inventory(draft(h("a")), out, force=True)
    assert list(load_inventory(out).targets) == ["a"]


def test_no_host_no_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        write_inventory(draft(), tmp_path / "inv.yaml")
    assert "no host to write" in str(exc.value)
