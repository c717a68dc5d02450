"""``raorch report`` of a real lab rollout, opened in a real browser (Debian's chromium,
headless): refusals in the canary, a failed gate in the pilot rolled back by
``on_gate_failure: rollback``, a verify afterwards. The page chromium built (``--dump-dom``) must
show the journal's figures, and its charts must be drawn with one bar / point per item.

Without chromium the test is skipped with how to install it, except in CI (``CI=true``), where
``.ci/run`` installs it and a missing browser is a failure.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import RaorchCli, expected_refused, lab_inventory  # pytest puts this dir on path

from raorch.lab import LabHandle

LabFactory = Callable[..., LabHandle]
CliFactory = Callable[[LabHandle], RaorchCli]
BROWSER_WAIT = 120.0  # a bound so that a hung browser fails the test instead of hanging CI
INSTALL = "apt-get install -y chromium (Debian; .ci/run does it)"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium is not installed, and CI must run this test: {INSTALL}")
        pytest.skip(f"chromium is not installed: {INSTALL}")
    return found


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless chromium on a local file. As root it needs --no-sandbox; on a closed network
    everything that would phone out is off, with a fresh profile, or it stalls on refused
    connections."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_WAIT,
        stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- the page as a tree

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            yield from child.iter()

    def all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.iter()
            if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, ident: str) -> Element:
        [found] = [e for e in self.iter() if e.attrs.get("id") == ident]
        return found

    def rows(self) -> list[Element]:
        return [tr for tr in self.all("tr") if tr.all("td")]


class Dom(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        self.stack[-1].parts.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


# ---------------------------------------------------------------- the test


def test_the_report_of_a_lab_rollout_in_a_real_browser(
    lab_factory: LabFactory, raorch_cli: CliFactory, tmp_path: Path
) -> None:
    chromium()  # skip (or fail in CI) before starting anything
    lab = lab_factory(hosts=10, mix="win10-ent:5,xp-pro:2,win10-home:1,server2003:1,win11-pro:1")
    names = [f"lab-{i:04d}" for i in range(1, 11)]
    # The pilot's last host refuses connections: its failure fails the gate (0% allowed)
    # after the first batch changed hosts, which on_gate_failure: rollback restores.
    eligible = [h for h in names[4:] if not expected_refused(lab.state(h))]
    failing = eligible[-1]
    pilot = [h for h in names[4:] if h != failing] + [failing]
    lab.set_faults({"faults": [{"hosts": [failing], "unreachable": True}]})
    inventory = lab_inventory(
        lab,
        tmp_path / "report.yaml",
        [
            {"name": "canary", "hosts": names[:4], "max_fail_percentage": 0},
            {
                "name": "pilot",
                "hosts": pilot,
                "max_fail_percentage": 0,
                "batch": 3,
                "on_gate_failure": "rollback",
            },
        ],
    )
    cli = raorch_cli(lab)
    for wave, codes in (("canary", (0,)), ("pilot", (3,))):
        proc = cli.run("rollout", "--inventory", str(inventory), "--wave", wave, "--no-dashboard")
        assert proc.returncode in codes, proc.stdout + proc.stderr
    verify = cli.run("verify", "--inventory", str(inventory), "--json")
    assert verify.returncode in (1, 5), verify.stdout + verify.stderr
    verdicts = Counter(h["outcome"] for h in json.loads(verify.stdout)["hosts"])

    out = tmp_path / "report.html"
    made = cli.run("report", "--last", "--out", str(out))
    assert made.returncode == 0, made.stdout + made.stderr
    html = out.read_text(encoding="utf-8")
    assert lab.password not in html
    # Self-contained: nothing is loaded from anywhere (links only within the page).
    for element in Dom(html).root.iter():
        assert "src" not in element.attrs and element.tag != "link", element
        assert element.attrs.get("href", "#").startswith("#"), element

    dumped = browse(out, tmp_path / "chromium-dom", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = Dom(dumped.stdout).root

    # ------------------------------------------------ the figures are the journal's
    journal = cli.journal
    hosts = journal.hosts()
    rollbacks = {r["host"]: r["outcome"] for r in journal.rollbacks()}
    outcome = {h: r["outcome"] for h, r in hosts.items()}
    standing = {
        h: "rolled back" if rollbacks.get(h) == "rolled_back" else o for h, o in outcome.items()
    }
    assert "rolled back" in standing.values() and "skipped" in standing.values()
    figures = {
        card.attrs["data-figure"]: int(card.all("span")[0].text())
        for card in page.all("div", **{"class": "card"})
        if "data-figure" in card.attrs
    }
    counts = Counter(standing.values())
    assert figures["changed"] == counts["changed"]
    assert figures["unchanged"] == counts["unchanged"]
    assert figures["refused"] == counts["skipped"]
    assert figures["failed"] == counts["failed"] == 1
    assert figures["rolled back"] == counts["rolled back"] == len(rollbacks)
    assert page.by_id("rollout-status").attrs["data-status"] == "open"
    assert getpass.getuser() in page.by_id("accounts").text()
    assert "Offer Remote Assistance" in page.by_id("playbook").text()

    waves = journal.waves()
    shown_waves = {tr.attrs["data-wave"]: tr.attrs for tr in page.by_id("waves").rows()}
    assert set(shown_waves) == {"canary", "pilot"}
    for name, wave in waves.items():
        assert shown_waves[name]["data-state"] == wave["state"]
        assert int(shown_waves[name]["data-hosts"]) == sum(
            1 for r in hosts.values() if r["wave"] == name
        )
    assert shown_waves["canary"]["data-gate"] == "held"
    assert shown_waves["pilot"]["data-gate"] == "failed"
    assert shown_waves["pilot"]["data-state"] == "rolled_back"

    refused = page.by_id("refused").rows()
    assert sorted(tr.all("td")[0].text() for tr in refused) == sorted(
        h for h, o in outcome.items() if o == "skipped"
    )
    for tr in refused:  # its Windows was recorded although it has no snapshot
        assert "Windows" in tr.all("td")[2].text() and "not read" not in tr.all("td")[2].text()
    [failed] = page.by_id("failed").rows()
    cells = [td.text() for td in failed.all("td")]
    assert cells[0] == failing and cells[4] == "connect" and "not read" in cells[2]

    # ------------------------------------------------ the charts are drawn
    timeline = page.by_id("chart-timeline")
    lines = {p.attrs["data-wave"]: p for p in timeline.all("polyline")}
    for name in waves:
        finished = sum(1 for r in hosts.values() if r["wave"] == name and r["outcome"])
        assert int(lines[name].attrs["data-hosts"]) == finished
        assert len(lines[name].attrs["points"].split()) == finished + 1  # a point per host
    assert len(lines["rolled back"].attrs["points"].split()) == len(rollbacks) + 1
    assert len(lines) == len(waves) + 1

    platforms = {(r["profile"], r["caption"], r["os_version"]) for r in journal.platforms()}
    unread = set(hosts) - {r["host"] for r in journal.platforms()}
    bars = page.by_id("chart-platforms").all("g", **{"class": "bar"})
    assert len(bars) == len(platforms) + (1 if unread else 0)
    assert sum(int(b.attrs["data-total"]) for b in bars) == len(hosts)
    for bar in bars:
        rects = bar.all("rect")
        assert rects and all(float(r.attrs["width"]) > 0 for r in rects)

    problems = {
        (standing[h], r["stage"], r["reason"])
        for h, r in hosts.items()
        if standing[h] in ("skipped", "failed")
    }
    reasons = page.by_id("chart-reasons").all("g", **{"class": "bar"})
    assert len(reasons) == len(problems)
    assert sum(int(b.attrs["data-total"]) for b in reasons) == sum(
        1 for s in standing.values() if s in ("skipped", "failed")
    )

    # ------------------------------------------------ verify, and each host's before/after
    shown_verify = {
        card.attrs["data-verify"]: int(card.all("span")[0].text())
        for card in page.by_id("verify").all("div")
        if "data-verify" in card.attrs
    }
    assert shown_verify == dict(verdicts)
    host_rows = page.by_id("hosts").rows()
    assert sorted(tr.all("td")[0].text() for tr in host_rows) == sorted(hosts)
    applied = set(journal.applied())
    with_changes = {tr.all("td")[0].text() for tr in host_rows if tr.all("details")}
    assert with_changes == applied
    for details in page.by_id("hosts").all("details"):  # collapsed, and its list exists
        assert "open" not in details.attrs
        page.by_id(f"set-{details.attrs['data-set']}")

    shot = tmp_path / "report.png"
    taken = browse(
        out, tmp_path / "chromium-shot", f"--screenshot={shot}", "--window-size=1280,2000"
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
