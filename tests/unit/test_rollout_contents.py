"""What the journal keeps of a rollout's content (engine/contents.py) and the decisions the
engine takes on it: the diff shown when the files changed in the middle of a rollout, a change
of text only, how a host is reached, the playbooks of each host, and a journal an older raorch
wrote. The journal is the real SQLite store in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from raorch import samples
from raorch.engine.contents import (
    PlaybookBook,
    _reach_digest,
    content_of,
    describe_changes,
    target_from_json,
    target_to_json,
)
from raorch.engine.dispatch import HostSide
from raorch.engine.journal import Journal
from raorch.engine.rollback import Rollback
from raorch.engine.rollout import ContentChangedError, Rollout, RunOptions, WorkContext, WorkResult
from raorch.engine.store import ContentRow, JournalStore
from raorch.models.errors import RefusedError
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    GateAction,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
    WaveSpec,
)
from raorch.models.load import load_playbook
from raorch.models.outcomes import Outcome, WaveState
from raorch.models.playbook import Permission, Playbook

CONN = Connection(Scheme.HTTPS, 5986, AuthMethod.NTLM, True, "/etc/ca.pem", 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "RAORCH_PW"))
PLAYBOOK = Playbook.model_validate(
    {
        "name": "ra",
        "offer_remote_assistance": {
            "state": "enabled",
            "permission": "view_and_control",
            "helpers": ["CORP\\RA-Helpers"],
        },
    }
)


def spec(name: str, hosts: list[str]) -> WaveSpec:
    return WaveSpec(name, tuple(hosts), 0, None, GateAction.HALT, False, None)


def inventory(tmp_path: Path, waves: list[WaveSpec], text: str = "inventory") -> ResolvedInventory:
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    targets = {h: Target(h, "10.0.0.1", CONN, CREDS, w.name) for w in waves for h in w.hosts}
    return ResolvedInventory(str(path), None, ("CORP",), targets, tuple(waves))


def changed(ctx: WorkContext, side: HostSide) -> WorkResult:
    side.commit_snapshot(f"snapshot-of-{ctx.target.name}")
    return WorkResult(Outcome.CHANGED, changes=1, applied="[]")


def run(rollout: Rollout, wave: str, **kw: object) -> object:
    opts = RunOptions(wave=wave, subscribers=[rollout.journal.record], **kw)  # type: ignore[arg-type]
    return asyncio.run(rollout.run_wave(opts))


def test_a_target_round_trips_without_its_secret() -> None:
    target = Target("ws-01", "ws-01.corp", CONN, CREDS, "pilot")
    text = target_to_json(target)
    assert target_from_json(text) == target
    assert "RAORCH_PW" in text  # the reference, which is no secret
    cert = Target("ws-02", "ws-02", CONN, None, "pilot")
    assert target_from_json(target_to_json(cert)) == cert
    remote = Target("ws-03", "ws-03", CONN, CREDS, "pilot", "paris")
    assert target_from_json(target_to_json(remote)) == remote


def test_a_target_kept_before_sites_existed_is_of_the_default_site() -> None:
    kept = json.loads(target_to_json(Target("ws-01", "ws-01.corp", CONN, CREDS, "pilot")))
    del kept["site"]
    assert target_from_json(json.dumps(kept)).site == "default"


def test_a_host_moved_to_another_site_is_not_reached_differently(tmp_path: Path) -> None:
    # Digests kept before sites existed stay comparable: no diff, no --continue asked.
    waves = [spec("canary", ["a"])]
    old_inv = inventory(tmp_path, waves)
    new_inv = inventory(tmp_path, waves)
    new_inv.targets["a"] = Target("a", "10.0.0.1", CONN, CREDS, "canary", "paris")
    old = content_of("c1", old_inv, "i1", "/pb.yaml", "p1", PLAYBOOK)
    new = content_of("c2", new_inv, "i2", "/pb.yaml", "p1", PLAYBOOK)
    row = ContentRow("r", 1, "c1", "i1", "/pb.yaml", "p1", old.playbook_json,
                     old.inventory_json, "began", 0.0)  # fmt: skip
    assert describe_changes(row, new) == []


def test_a_kerberos_target_round_trips_and_old_records_keep_their_digest() -> None:
    kerberos = replace(CONN, auth=AuthMethod.KERBEROS, spn_host="ws-03.corp")
    cached = Target("ws-03", "10.0.0.3", kerberos, Credentials("CORP\\ops", None), "pilot")
    assert target_from_json(target_to_json(cached)) == cached
    ticket_cache = Target("ws-04", "ws-04.corp", kerberos, None, "pilot")
    assert target_from_json(target_to_json(ticket_cache)) == ticket_cache
    # A target without spn_host is digested as before spn_host existed: the journal's
    # recorded hosts are not "reached differently" after an upgrade. (The digest of
    # ws-01's connection as raorch wrote it before spn_host, computed then.)
    old = Target("ws-01", "ws-01.corp", CONN, CREDS, "pilot")
    assert _reach_digest(old) == "e47f8a62d978"
    assert _reach_digest(replace(old, connection=kerberos)) != _reach_digest(old)


def test_the_diff_names_settings_waves_and_hosts(tmp_path: Path) -> None:
    old_inv = inventory(tmp_path, [spec("canary", ["a", "b"]), spec("pilot", ["c", "d"])])
    new_waves = [spec("canary", ["a"]), spec("pilot", ["c", "d", "b", "e"])]
    new_inv = inventory(tmp_path, new_waves)
    new_inv.targets["d"] = Target("d", "10.9.9.9", CONN, CREDS, "pilot")
    view = PLAYBOOK.model_copy(
        update={
            "offer_remote_assistance": PLAYBOOK.offer_remote_assistance.model_copy(
                update={
                    "permission": Permission.VIEW,
                    "helpers": ("CORP\\RA-Helpers", "CORP\\jdoe"),
                }
            )
        }
    )
    old = content_of("c1", old_inv, "i1", "/pb.yaml", "p1", PLAYBOOK)
    new = content_of("c2", new_inv, "i2", "/pb.yaml", "p2", view)
    row = ContentRow("r", 1, "c1", "i1", "/pb.yaml", "p1", old.playbook_json,
                     old.inventory_json, "began", 0.0)  # fmt: skip
    assert describe_changes(row, new) == [
        "playbook offer_remote_assistance.helpers: + CORP\\jdoe",
        "playbook offer_remote_assistance.permission: view_and_control -> view",
        "hosts added (1): e (pilot)",
        "hosts moved to another wave (1): b (canary -> pilot)",
        "hosts reached differently (address, connection or credentials) (1): d",
    ]


def test_a_change_of_text_only_goes_on_with_the_rollout(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    waves = [spec("canary", ["a"]), spec("pilot", ["b"])]
    pb = tmp_path / "pb.yaml"
    pb.write_text("playbook")
    journal = journal_store
    first = Rollout(journal, inventory(tmp_path, waves), pb, changed, PLAYBOOK)
    run(first, "canary")
    # A comment added: another campaign, the same settings, waves and hosts.
    edited = inventory(tmp_path, waves, text="inventory # a comment")
    second = Rollout(journal, edited, pb, changed, PLAYBOOK)
    result = run(second, "pilot")
    assert result.state is WaveState.DONE  # type: ignore[attr-defined]
    assert second.id == first.id and [r.id for r in journal.rollouts()] == [first.id]
    assert "comments or layout" in second.notes[0]
    assert [c.note for c in journal.contents(first.id)][1].startswith("the files' text changed")
    # each host is recorded with the revision it was applied with
    assert journal.host_revisions(first.id) == {"a": [1], "b": [2]}


def test_changed_settings_are_refused_before_any_record(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    waves = [spec("canary", ["a"]), spec("pilot", ["b"])]
    pb = tmp_path / "pb.yaml"
    pb.write_text("playbook")
    journal = journal_store
    inv = inventory(tmp_path, waves)
    first = Rollout(journal, inv, pb, changed, PLAYBOOK)
    run(first, "canary")
    pb.write_text("playbook, edited")
    view = PLAYBOOK.model_copy(
        update={
            "offer_remote_assistance": PLAYBOOK.offer_remote_assistance.model_copy(
                update={"permission": Permission.VIEW}
            )
        }
    )
    second = Rollout(journal, inv, pb, changed, view)
    with pytest.raises(ContentChangedError) as refused:
        run(second, "pilot")
    assert refused.value.changes == [
        "playbook offer_remote_assistance.permission: view_and_control -> view"
    ]
    assert len(journal.rollouts()) == 1 and len(journal.contents(first.id)) == 1
    going_on = Rollout(journal, inv, pb, changed, view, go_on=True)
    run(going_on, "pilot")
    book = PlaybookBook.of(journal, first.id)
    assert book.playbooks("a") == (PLAYBOOK,) and book.playbooks("b") == (view,)


def test_a_journal_written_by_an_older_raorch_opens_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE rollouts (id TEXT PRIMARY KEY, campaign TEXT NOT NULL,
            inventory TEXT NOT NULL, playbook TEXT NOT NULL,
            playbook_sha TEXT NOT NULL DEFAULT '', waves TEXT NOT NULL,
            created_at REAL NOT NULL, closed_at REAL);
        CREATE TABLE waves (rollout_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
            total INTEGER NOT NULL DEFAULT 0, max_fail_percentage REAL NOT NULL DEFAULT 0,
            forced INTEGER NOT NULL DEFAULT 0, gate_held INTEGER, failure_percentage REAL,
            started_at REAL, finished_at REAL, PRIMARY KEY (rollout_id, name));
        INSERT INTO rollouts VALUES ('old-1', 'c0', '/inv.yaml', '/pb.yaml', 'sha0',
            '["canary"]', 1.0, NULL);
        INSERT INTO waves VALUES ('old-1', 'canary', 'done', 3, 0, 0, 1, 0, 1.0, 2.0);
        """
    )
    db.commit()
    db.close()
    journal = Journal(path)
    (wave,) = journal.waves("old-1")
    assert (wave.size, wave.total) == (None, 3)
    assert journal.contents("old-1") == []
    # Its first content is known by its hashes only: its hosts' playbook is not in the journal.
    book = PlaybookBook.of(journal, "old-1")
    assert book.playbooks("a") == () and not book.complete(["a"])
    inv = inventory(tmp_path, [spec("canary", ["a"])])
    content = content_of("c1", inv, "i1", "/pb.yaml", "sha1", PLAYBOOK)
    assert journal.add_revision("old-1", content, ("canary",), "continued") == 2
    first, second = journal.contents("old-1")
    assert (first.playbook_sha, first.playbook_json, second.campaign) == ("sha0", "", "c1")
    assert journal.find_rollout("c1") is not None and journal.find_rollout("c0") is None


def test_rollback_refuses_a_changed_playbook_only_where_the_journal_lacks_it(
    tmp_path: Path, journal_store: JournalStore
) -> None:
    pb = tmp_path / "pb.yaml"
    pb.write_bytes((Path(samples.__file__).parent / "offer-remote-assistance.yaml").read_bytes())
    inv = inventory(tmp_path, [spec("canary", ["a"])])
    journal = journal_store
    # No checked playbook given: the journal keeps the file's hash only, as an older raorch did.
    old = Rollout(journal, inv, pb, changed)
    run(old, "canary")
    row = journal.rollout(old.id)
    assert row is not None
    engine = Rollback(journal, row, inv)
    playbook, book = engine.playbooks(["a"])
    assert playbook == load_playbook(pb) and book.playbooks("a") == ()
    pb.write_text(pb.read_text(encoding="utf-8") + "\n# edited since\n", encoding="utf-8")
    with pytest.raises(RefusedError, match="is missing or has changed since"):
        engine.playbooks(["a"])
    pb.unlink()
    with pytest.raises(RefusedError, match="is missing or has changed since"):
        engine.playbooks(["a"])
    # A rollout whose playbook the journal keeps needs no file.
    pb.write_text("playbook")
    kept = Rollout(
        journal, inventory(tmp_path, [spec("canary", ["b"])], "other"), pb, changed, PLAYBOOK
    )
    run(kept, "canary")
    pb.unlink()
    kept_row = journal.rollout(kept.id)
    assert kept_row is not None
    assert Rollback(journal, kept_row, inv).playbooks(["b"])[0] is None
    assert Rollback(journal, kept_row, inv).playbooks(["b"])[1].playbooks("b") == (PLAYBOOK,)
    journal.close()
