"""The change report (``raorch report``): the model built from a real journal (SQLite in
tmp_path, fed with the engine's events), the chart geometry, the escaping of everything a
host, a helper or a reason can carry (hypothesis), and an older journal still opening."""

from __future__ import annotations

import html.parser
import json
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from raorch.cli.main import main
from raorch.engine.journal import Journal
from raorch.engine.report import (
    UNKNOWN_PLATFORM,
    ChangeReport,
    HostStatus,
    RolloutStatus,
    build_report,
)
from raorch.engine.report_html import MAX_POINTS, line_chart, render_report
from raorch.engine.store import VerifyRow
from raorch.models.events import (
    GateEvaluated,
    HostFinished,
    HostStarted,
    RolloutFinished,
    RolloutStarted,
    RunKind,
    WaveFinished,
    WaveStarted,
)
from raorch.models.outcomes import Outcome, Reason, Stage, WaveState
from raorch.models.remote import RegType, RegValue
from raorch.planning.plan import MemberChange, ValueChange, changes_to_json

T0 = 1_800_000_000.0
WIN10 = ("Microsoft Windows 10 Enterprise", "10.0", "modern")
TS_KEY = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"


def value_change(name: str, before: int | None) -> ValueChange:
    return ValueChange(
        TS_KEY,
        name,
        None if before is None else RegValue(RegType.DWORD, before),
        RegValue(RegType.DWORD, 1),
    )


class Fleet:
    """A rollout written to a real journal the way the engine writes it: events, applied
    changes, platforms, rollbacks (with the events a rollback emits) and verify verdicts."""

    def __init__(self, path: Path, waves: tuple[str, ...] = ("canary", "pilot")) -> None:
        self.journal = Journal(path)
        self.row = self.journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", waves, "sha")
        self.id = self.row.id
        self.clock = T0

    def tick(self, seconds: float = 1.0) -> float:
        self.clock += seconds
        return self.clock

    def run(self, kind: RunKind = RunKind.ROLLOUT) -> None:
        self.journal.record(
            RolloutStarted(self.id, kind, "/inv.yaml", "/pb.yaml", self.row.waves, self.tick())
        )

    def end_run(self) -> None:
        self.journal.record(RolloutFinished(self.id, self.tick()))

    def wave(self, name: str, total: int, max_fail: float = 0.0) -> None:
        self.journal.record(WaveStarted(self.id, name, total, max_fail, self.tick()))

    def host(
        self,
        wave: str,
        host: str,
        outcome: Outcome,
        reason: Reason | None = None,
        *,
        changes: tuple[ValueChange | MemberChange, ...] = (),
        platform: tuple[str, str, str] | None = WIN10,
    ) -> None:
        self.journal.record(HostStarted(self.id, wave, host, self.tick()))
        if changes:
            self.journal.save_applied(self.id, host, changes_to_json(changes))
            self.journal.save_snapshot(self.id, host, "{}")
        if platform is not None:
            self.journal.save_platform(self.id, host, *platform)
        self.journal.record(
            HostFinished(self.id, wave, host, outcome, reason, 1.0, self.tick(), len(changes))
        )

    def gate(self, wave: str, finished: int, failed: int, max_fail: float, held: bool) -> None:
        share = 100.0 * failed / finished if finished else 0.0
        self.journal.record(
            GateEvaluated(self.id, wave, finished, failed, share, max_fail, held, self.tick())
        )

    def wave_done(self, wave: str, state: WaveState) -> None:
        self.journal.record(WaveFinished(self.id, wave, state, {}, self.tick()))

    def rollback(self, wave: str, host: str, outcome: Outcome, details: tuple[str, ...]) -> None:
        reason = None if outcome is Outcome.ROLLED_BACK else Reason(Stage.ROLLBACK, "changed since")
        self.journal.record(
            HostFinished(
                self.id,
                wave,
                host,
                outcome,
                reason,
                1.0,
                self.tick(),
                details=details,
                kind=RunKind.ROLLBACK,
            )
        )

    def report(self, lines: tuple[str, ...] = ()) -> ChangeReport:
        return build_report(self.journal, self.id, generated_at=self.tick(), playbook_lines=lines)


REFUSED = Reason(Stage.PREFLIGHT, "Home edition: Offer Remote Assistance policy is not available")
UNREACHABLE = Reason(Stage.CONNECT, "connection refused")


def scenario(path: Path) -> Fleet:
    """canary: 2 changed, 1 refused, gate held; pilot: 1 changed, 1 failed, gate failed, the
    changed host rolled back and one canary host in conflict; a verify afterwards."""
    f = Fleet(path)
    f.run()
    f.wave("canary", 3)
    f.host("canary", "ws-01", Outcome.CHANGED, changes=(value_change("fAllowUnsolicited", None),))
    f.host("canary", "ws-02", Outcome.CHANGED, changes=(value_change("fAllowUnsolicited", None),))
    f.host(
        "canary",
        "home-01",
        Outcome.SKIPPED,
        REFUSED,
        platform=("Microsoft Windows 10 Home", "10.0", "modern"),
    )
    f.gate("canary", 3, 0, 0.0, True)
    f.wave_done("canary", WaveState.DONE)
    f.end_run()
    f.tick(600)  # the change board's pause before the pilot
    f.run()
    f.wave("pilot", 2)
    f.host("pilot", "xp-01", Outcome.CHANGED, changes=(value_change("fAllowUnsolicited", 0),))
    f.host("pilot", "ws-03", Outcome.FAILED, UNREACHABLE, platform=None)
    f.gate("pilot", 2, 1, 0.0, False)
    f.wave_done("pilot", WaveState.HALTED)
    f.rollback("pilot", "xp-01", Outcome.ROLLED_BACK, ())
    f.rollback("canary", "ws-02", Outcome.CONFLICT, ("item: expected 1, found 7",))
    f.journal.record(
        WaveFinished(
            f.id, "pilot", WaveState.DONE, {Outcome.ROLLED_BACK: 1}, f.tick(), RunKind.ROLLBACK
        )
    )
    f.end_run()
    f.journal.record_verify(
        f.id,
        [
            VerifyRow("ws-01", Outcome.COMPLIANT, None, None, (), f.tick()),
            VerifyRow(
                "xp-01",
                Outcome.DRIFTED,
                Stage.VERIFY,
                "1 setting(s) differ from the playbook",
                ("fAllowUnsolicited: expected 1, found 0",),
                f.tick(),
            ),
        ],
    )
    return f


def test_the_model_matches_the_journal(tmp_path: Path) -> None:
    f = scenario(tmp_path / "state.db")
    r = f.report(("will enable Offer Remote Assistance",))
    totals = dict(r.totals)
    assert totals[HostStatus.CHANGED] == 1  # ws-01 (ws-02 conflicted, xp-01 rolled back)
    assert totals[HostStatus.REFUSED] == 1
    assert totals[HostStatus.FAILED] == 1
    assert totals[HostStatus.ROLLED_BACK] == 1
    assert totals[HostStatus.CONFLICT] == 1
    assert r.host_count == 5
    assert r.status is RolloutStatus.OPEN and "pilot" in r.status_detail
    waves = {w.name: w for w in r.waves}
    assert waves["canary"].gate_held is True and waves["canary"].hosts == 3
    assert waves["pilot"].state is WaveState.ROLLED_BACK and waves["pilot"].gate_held is False
    assert [p.host for p in r.refused] == ["home-01"]
    assert r.refused[0].platform == "Microsoft Windows 10 Home (10.0)"
    assert [(p.host, p.stage) for p in r.failed] == [("ws-03", Stage.CONNECT)]
    assert r.failed[0].platform == UNKNOWN_PLATFORM
    assert [(p.host, p.details) for p in r.conflicts] == [("ws-02", ("item: expected 1, found 7",))]
    # Two distinct change lists: "absent -> 1" (ws-01, ws-02) and "0 -> 1" (xp-01).
    assert [(s.hosts, s.changes[0].before) for s in r.change_sets] == [
        (2, "absent"),
        (1, "REG_DWORD 0"),
    ]
    sets = {h.host: h.change_set for h in r.hosts}
    assert sets["ws-01"] == sets["ws-02"] == 1 and sets["home-01"] is None
    # Ranked by count, then by standing: one host each here.
    assert [(x.status, x.count) for x in r.reasons] == [
        (HostStatus.FAILED, 1),
        (HostStatus.REFUSED, 1),
        (HostStatus.CONFLICT, 1),
    ]
    assert r.accounts and all("@" in a for a in r.accounts)
    assert r.verify is not None
    assert dict(r.verify.counts) == {Outcome.COMPLIANT: 1, Outcome.DRIFTED: 1}
    assert [p.host for p in r.verify.not_compliant] == ["xp-01"]
    assert [len(w.finished) for w in r.wave_times] == [3, 2]
    assert len(r.rollback_times) == 1


def test_the_timeline_has_a_line_per_wave_and_the_pause_between(tmp_path: Path) -> None:
    r = scenario(tmp_path / "state.db").report()
    chart = line_chart(r)
    assert chart is not None
    # canary, pilot, and the hosts rolled back (dashed); one point per host plus the start.
    assert [(s.label, s.hosts, len(s.points), s.dashed) for s in chart.series] == [
        ("canary", 3, 4, False),
        ("pilot", 2, 3, False),
        ("rolled back", 1, 2, True),
    ]
    [pause] = chart.pauses
    assert pause.text == "10 min" and pause.x2 - pause.x1 > 60
    assert pause.y == chart.series[0].points[-1][1]  # level with the canary's last host


def test_a_big_wave_is_sampled_to_a_bounded_line(tmp_path: Path) -> None:
    f = Fleet(tmp_path / "state.db", ("broad",))
    f.run()
    f.wave("broad", 1000)
    for i in range(1000):
        f.host("broad", f"h{i:04d}", Outcome.UNCHANGED)
    chart = line_chart(f.report())
    assert chart is not None
    [line] = chart.series
    assert len(line.points) == MAX_POINTS + 1 and line.hosts == 1000
    assert line.points[-1][1] == chart.top  # the last host is the top of the chart


def test_a_done_rollout_and_a_rolled_back_one(tmp_path: Path) -> None:
    f = Fleet(tmp_path / "state.db", ("all",))
    f.run()
    f.wave("all", 1)
    f.host("all", "ws-01", Outcome.CHANGED, changes=(value_change("fAllowUnsolicited", None),))
    f.gate("all", 1, 0, 0.0, True)
    f.wave_done("all", WaveState.DONE)
    f.end_run()
    assert f.report().status is RolloutStatus.DONE
    f.journal.close_rollout(f.id)
    assert f.report().status is RolloutStatus.ROLLED_BACK


# ---------------------------------------------------------------- the page


class Page(html.parser.HTMLParser):
    """The elements and text of a page, as a browser's parser splits them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


# What the page itself uses; anything else would have come from the data.
PAGE_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "section", "h1", "h2", "h3"),
    *("div", "span", "code", "dl", "dt", "dd", "pre", "p", "table", "thead", "tbody", "tr"),
    *("th", "td", "ul", "li", "details", "summary", "a", "input", "script"),
    *("svg", "g", "rect", "line", "polyline", "text"),
}

# Text with what HTML treats specially, and names Windows allows in accounts and hosts.
hostile = st.lists(
    st.sampled_from(
        [*"<>&\"'/=` ;:!-_.\\abcXYZ01", "<script>", "</td>", "&amp;", "<img src=x onerror=a()>"]
    ),
    min_size=1,
    max_size=12,
).map("".join)


@settings(max_examples=40, deadline=None)
@given(host=hostile, helper=hostile, reason=hostile, account=hostile)
def test_every_host_name_helper_reason_and_account_is_escaped(
    host: str, helper: str, reason: str, account: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with mock.patch("raorch.engine.journal_sql.operator_account", return_value=account):
            f = Fleet(Path(tmp) / "state.db", ("canary",))
            f.run()
        f.wave("canary", 3)
        member = MemberChange("S-1-5-32-544", helper, "S-1-5-21-1-2-3-1001", False, True)
        raunsolicit = ValueChange(
            TS_KEY + "\\RAUnsolicit", helper, None, RegValue(RegType.SZ, helper)
        )
        f.host("canary", host, Outcome.CHANGED, changes=(member, raunsolicit))
        f.host("canary", host + "-2", Outcome.SKIPPED, Reason(Stage.PREFLIGHT, reason))
        f.host("canary", host + "-3", Outcome.FAILED, Reason(Stage.APPLY, reason))
        page_text = render_report(f.report((f"helpers: {helper}",)))
        f.journal.close()
    page = Page(page_text)
    assert set(page.tags) <= PAGE_TAGS, set(page.tags) - PAGE_TAGS
    assert page.tags["script"] == 1  # the page's own, and no other
    assert not [a for a, _ in page.attributes if a.startswith("on")]  # no event handler
    text = "".join(page.text)
    for shown in (host, host + "-2", helper, reason, account, f"helpers: {helper}"):
        assert shown in text, shown


def test_the_report_command_writes_a_private_file(tmp_path: Path, monkeypatch: object) -> None:
    home = tmp_path / "home"
    scenario(home / "state.db").journal.close()
    runner = CliRunner()
    out = tmp_path / "r.html"
    result = runner.invoke(
        main, ["report", "--last", "--out", str(out)], env={"RAORCH_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    assert "5 hosts" in result.output and (out.stat().st_mode & 0o777) == 0o600
    page = Page(out.read_text(encoding="utf-8"))
    assert "ws-03" in "".join(page.text)
    # The playbook /pb.yaml is not there: the report says so instead of what was set.
    assert "no longer there" in out.read_text(encoding="utf-8")
    missing = runner.invoke(main, ["report", "nope"], env={"RAORCH_HOME": str(home)})
    assert missing.exit_code == 6 and "nope" in missing.output
    nowhere = tmp_path / "no-such-dir" / "r.html"
    unwritable = runner.invoke(
        main, ["report", "--out", str(nowhere)], env={"RAORCH_HOME": str(home)}
    )
    assert unwritable.exit_code == 6 and "cannot write the report" in unwritable.output
    assert "Traceback" not in unwritable.output


def test_a_journal_of_an_older_raorch_opens_and_reports(tmp_path: Path) -> None:
    """A journal written before runs had an account column (and before platforms and
    verifications): it opens, the column is added, its runs read as by nobody recorded."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL,
            kind TEXT NOT NULL, wave TEXT, forced INTEGER NOT NULL DEFAULT 0,
            started_at REAL NOT NULL, finished_at REAL, interrupted INTEGER NOT NULL DEFAULT 0);
        INSERT INTO runs (rollout_id, kind, started_at) VALUES ('r1', 'rollout', 1.0);
        """
    )
    db.commit()
    db.close()
    journal = Journal(path)
    [old] = journal.runs("r1")
    assert old.account == ""
    row = journal.open_rollout("d" * 64, "/inv.yaml", "/pb.yaml", ("w",))
    journal.record(RolloutStarted(row.id, RunKind.ROLLOUT, "/i", "/p", ("w",), 2.0))
    [new] = journal.runs(row.id)
    assert new.account != ""
    r = build_report(journal, row.id, generated_at=3.0)
    assert r.accounts == (new.account,) and r.verify is None
    journal.close()


def test_the_platform_of_an_older_journal_comes_from_the_snapshot(tmp_path: Path) -> None:
    """Before platforms were recorded, a changed host's Windows is read from its snapshot."""
    f = Fleet(tmp_path / "state.db", ("w",))
    f.run()
    f.wave("w", 1)
    f.host("w", "xp-01", Outcome.CHANGED, platform=None)
    snapshot = {
        "format": "raorch-snapshot/1",
        "host": "xp-01",
        "facts": {
            "os_version": "5.1.2600",
            "caption": "Microsoft Windows XP Professional",
            "sku": 0,
            "ps_version": "2.0",
            "part_of_domain": True,
            "domain": "CORP",
            "language": "en-US",
            "computer_name": "XP-01",
            "wow64": False,
        },
        "accounts": [],
        "registry": [],
        "administrators": None,
        "firewall": None,
    }
    f.journal.save_snapshot(f.id, "xp-01", json.dumps(snapshot))
    [entry] = f.report().hosts
    assert (entry.platform, entry.profile) == (
        "Microsoft Windows XP Professional (5.1.2600)",
        "legacy",
    )


def test_a_rollout_no_host_has_run_yet_renders(tmp_path: Path) -> None:
    f = Fleet(tmp_path / "state.db", ("canary",))
    r = f.report()
    assert r.host_count == 0 and r.status is RolloutStatus.OPEN
    assert r.status_detail == "not run yet: canary"
    page = render_report(r)
    assert "No host has finished yet." in page and 'id="chart-timeline"' not in page
