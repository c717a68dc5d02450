"""What a worker checks against the journal before it touches a host (engine/workers.py): a
task left over from an ended run, or sent to the wrong journal or site, does nothing. Each
check alone (the runs through real workers: tests/integration/test_workers.py)."""

from __future__ import annotations

import json
from pathlib import Path

from raorch.engine.dispatch import PlaybookRef, WorkContext, WorkResult
from raorch.engine.host import HostMode
from raorch.engine.journal import Journal
from raorch.engine.workers import WorkerSide
from raorch.models.events import RolloutStarted, RunKind, WaveStarted
from raorch.models.inventory import (
    AuthMethod,
    Connection,
    Credentials,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
)
from raorch.models.outcomes import Outcome
from raorch.models.secrets import SecretResolver

CONN = Connection(Scheme.HTTPS, 1, AuthMethod.NTLM, True, None, 5, 30, False)
CREDS = Credentials("CORP\\svc", SecretRef(SecretKind.ENV, "RAORCH_TEST_UNSET"))
TARGET = Target("ws-01", "127.0.0.1", CONN, CREDS, "w", "paris")


def task(rollout_id: str, target: Target = TARGET, mode: HostMode = HostMode.APPLY) -> str:
    return WorkContext(rollout_id, mode, target, None, 30.0, PlaybookRef("ab", 1)).to_json()


def result(side: WorkerSide, text: str) -> WorkResult:
    return WorkResult.from_json(side.run(text))


def side_and_rollout(tmp_path: Path) -> tuple[WorkerSide, Journal, str]:
    journal = Journal(tmp_path / "state.db")
    rid = journal.open_rollout("c" * 64, "/inv.yaml", "/pb.yaml", ("w",)).id
    lines: list[str] = []
    side = WorkerSide(journal, "paris", SecretResolver(), log=lines.append)
    return side, journal, rid


def test_a_journal_without_the_rollout_is_not_the_controllers(tmp_path: Path) -> None:
    side, journal, _ = side_and_rollout(tmp_path)
    done = result(side, task("20990101-000000-other-1"))
    assert done.outcome is Outcome.FAILED and done.reason is not None
    assert "has no rollout 20990101-000000-other-1" in done.reason.message
    assert "share one journal" in done.reason.message
    journal.close()


def test_a_task_no_controller_runs_any_more_is_dropped(tmp_path: Path) -> None:
    side, journal, rid = side_and_rollout(tmp_path)
    done = result(side, task(rid))
    assert done.reason is not None
    assert done.reason.message == (
        f"dropped by the worker, nothing was done: no controller runs rollout {rid} any more"
    )
    journal.close()


def test_a_task_of_a_wave_that_is_not_running_is_dropped(tmp_path: Path) -> None:
    side, journal, rid = side_and_rollout(tmp_path)
    with journal.lock(rid):  # a controller runs the rollout (this process holds its lock)
        done = result(side, task(rid))
        assert done.reason is not None
        assert done.reason.message.endswith(f"wave w of rollout {rid} is pending")
        journal.record(RolloutStarted(rid, RunKind.ROLLOUT, "/inv.yaml", "/pb.yaml", ("w",), 1.0))
        journal.record(WaveStarted(rid, "w", 1, 0.0, 2.0))
        # the wave runs: the task goes on to its work (here: no playbook in this journal)
        done = result(side, task(rid))
        assert done.reason is not None and "dropped" not in done.reason.message
        assert "no content of rollout" in done.reason.message
    journal.close()


def test_a_task_of_another_site_is_dropped(tmp_path: Path) -> None:
    side, journal, rid = side_and_rollout(tmp_path)
    lyon = Target("ws-02", "127.0.0.1", CONN, CREDS, "w", "lyon")
    done = result(side, task(rid, lyon))
    assert done.reason is not None
    assert "ws-02 is of site lyon, and this worker serves site paris" in done.reason.message
    assert json.loads(side.run(task(rid, lyon)))["outcome"] == "failed"
    journal.close()
