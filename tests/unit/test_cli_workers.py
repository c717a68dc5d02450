"""`raorch rollout --broker` and `raorch worker`: what is refused before anything is published
or recorded, and the broker's errors, never with its password. No broker is needed here (the
runs with one: tests/integration/test_workers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from raorch.cli.main import main
from raorch.engine.journal import Journal
from raorch.lab.inventory import InventorySpec, write_inventory
from raorch.models.load import load_inventory

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "offer-remote-assistance.yaml"
SECRET = "s3cr3t-Br0ker"
UNREACHABLE = f"amqp://raorch:{SECRET}@127.0.0.1:1/raorch"  # nothing listens on port 1


def inventory(tmp_path: Path, password: str = "env:RAORCH_TEST_PW") -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(
        f"playbook: {PLAYBOOK}\n"
        "domains: [CORP]\n"
        "defaults:\n"
        "  connection: {scheme: https, port: 1}\n"
        f"  credentials: {{username: 'CORP\\svc', password: '{password}'}}\n"
        "groups:\n"
        "  paris: {hosts: [a, b], site: paris}\n"
        "hosts:\n"
        "  a: {address: 127.0.0.1}\n"
        "  b: {address: 127.0.0.1, credentials: {username: 'CORP\\other', password: prompt}}\n"
        "  c: {address: 127.0.0.1, site: lyon}\n"
        "waves:\n"
        "  - {name: w, rest: true}\n",
        encoding="utf-8",
    )
    return path


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"RAORCH_HOME": str(tmp_path / "home")})
    return result.exit_code, result.output


def recorded(tmp_path: Path) -> list[str]:
    path = tmp_path / "home" / "state.db"
    if not path.exists():
        return []
    journal = Journal(path)
    try:
        return [r.id for r in journal.rollouts()]
    finally:
        journal.close()


def test_a_prompt_password_is_refused_with_workers_before_anything_is_published(
    tmp_path: Path,
) -> None:
    code, out = run(
        tmp_path, "rollout", "-i", str(inventory(tmp_path)), "--wave", "w",
        "--broker", UNREACHABLE, "--no-dashboard",
    )  # fmt: skip
    assert code == 6, out
    assert "1 host(s) have a prompt password (b), which cannot be used with workers" in out
    assert "nothing was published" in out
    assert recorded(tmp_path) == []  # refused before the broker was even reached


def test_an_unreachable_broker_is_said_without_its_password_and_nothing_is_recorded(
    tmp_path: Path,
) -> None:
    inv = inventory(tmp_path)
    inv.write_text(inv.read_text().replace("password: prompt", "password: env:X"))
    code, out = run(
        tmp_path, "rollout", "-i", str(inv), "--wave", "w", "--broker", UNREACHABLE,
        "--no-dashboard",
    )  # fmt: skip
    assert code == 6, out
    assert "cannot reach the broker amqp://raorch:**@127.0.0.1:1/raorch" in out
    assert SECRET not in out
    assert recorded(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/0", "must be RabbitMQ (amqp:// or amqps://), not 'redis'"),
        ("127.0.0.1:5672", "must be RabbitMQ (amqp:// or amqps://), not '127.0.0.1'"),
    ],
)
def test_only_rabbitmq_is_a_broker(tmp_path: Path, url: str, says: str) -> None:
    code, out = run(tmp_path, "worker", "--site", "paris", "--broker", url)
    assert code == 6 and says in out, out


def test_a_worker_says_why_it_cannot_start_never_the_password(tmp_path: Path) -> None:
    code, out = run(tmp_path, "worker", "--site", "paris", "--broker", UNREACHABLE)
    assert code == 6 and "cannot reach the broker amqp://raorch:**@127.0.0.1:1/raorch" in out
    assert SECRET not in out
    code, out = run(tmp_path, "worker", "--site", "two words", "--broker", UNREACHABLE)
    assert code == 2 and "'two words' is not a site name" in out


@pytest.mark.parametrize("value", ["0", "paris=", "x", "two words=3"])
def test_site_concurrency_is_n_or_site_n(tmp_path: Path, value: str) -> None:
    code, out = run(
        tmp_path, "rollout", "-i", str(inventory(tmp_path)), "--wave", "w",
        "--site-concurrency", value, "--no-dashboard",
    )  # fmt: skip
    assert code == 2 and "is not N or SITE=N (N >= 1)" in out, out


def test_a_rollout_without_broker_does_not_import_celery() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from raorch.cli.main import main\n"
        "result = CliRunner().invoke(main, ['rollout', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('celery', 'kombu'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_labs_inventory_deals_its_hosts_to_the_sites_in_turn(tmp_path: Path) -> None:
    ports = {f"lab-{i:04d}": 40000 + i for i in range(1, 21)}
    spec = InventorySpec(ports, "https", "ntlm", "CORP\\labadmin", "env:X", None, sites=("p", "l"))
    path = tmp_path / "lab.yaml"
    write_inventory(spec, path)
    loaded = load_inventory(path)
    assert {h: t.site for h, t in loaded.targets.items()} == {
        h: ("p" if i % 2 else "l") for i, h in enumerate(ports, start=1)
    }
    # every wave of more than one host spans both sites
    spanned = [{loaded.targets[h].site for h in w.hosts} for w in loaded.waves if len(w.hosts) > 1]
    assert spanned and all(sites == {"p", "l"} for sites in spanned)
