"""Credentials and transport security against the lab, through the real ``raorch`` command.

- A recognisable password never appears in any file raorch leaves (``RAORCH_HOME``, the working
  directory) or in any output stream (stdout, stderr, ``--json``, the live dashboard in a
  terminal), across plan, rollout, verify and rollback, a run where the lab refuses every
  login, and a run with a wrong (also recognisable) password.
- ``prompt`` asks once per distinct account, in a real terminal, never echoing.
- The state directory is 0700 and its files 0600 (journal db, -wal, -shm, log.jsonl, rollouts
  directories), even under umask 000.
- Certificate validation is on by default: without the lab's CA bundle, HTTPS fails (stage
  connect, certificate not trusted); Basic over plain HTTP runs only with ``insecure: true``,
  and then every command that contacts hosts warns on stderr, every run.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLI_WAIT, PLAYBOOK_FILE, lab_inventory

from raorch.lab import LabHandle, running_lab

# Recognisable, with characters that JSON, repr() and UTF-16 write differently.
PASSWORD = "Canary-Pässwort!7319#zQ"
WRONG = "Wrong-Kanarie€4471%xY"
HOSTS = 6
AUTH_REFUSED = "lab-0005"
UNREACHABLE = "lab-0006"


def forms(secret: str, user: str) -> list[bytes]:
    """Every spelling a leak could take: raw, JSON/repr escaped, UTF-16, Basic's base64."""
    texts = {
        secret,
        json.dumps(secret)[1:-1],  # ensure_ascii escapes
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
    }
    out = {t.encode("utf-8") for t in texts}
    out.add(secret.encode("utf-16-le"))
    out.add(base64.b64encode(f"{user}:{secret}".encode()))
    out.add(base64.b64encode(secret.encode()))
    return sorted(out)


def base_env(home: Path, password: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "COLUMNS", "LINES", "RAORCH_HOME", "RAORCH_LAB_PASSWORD")
    }
    env.update(RAORCH_HOME=str(home), RAORCH_LAB_PASSWORD=password, PYTHONUNBUFFERED="1")
    return env


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "raorch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=CLI_WAIT,
        stdin=subprocess.DEVNULL,
    )


def run_in_terminal(
    cwd: Path,
    env: dict[str, str],
    *args: str,
    answers: dict[bytes, bytes] | None = None,
) -> tuple[int, bytes, int]:
    """Runs the command in a pseudo-terminal (120x40); answers each prompt that ends the
    output so far with a key of ``answers``. Returns (exit code, everything the terminal
    showed, how many prompts were answered)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "raorch", *args],
        cwd=cwd,
        env={**env, "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    shown = bytearray()
    answered = 0
    since = 0
    end = time.monotonic() + CLI_WAIT  # a bound, so that a hang fails instead of stalling
    try:
        while True:
            assert time.monotonic() < end, shown.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            shown += chunk
            for prompt, answer in (answers or {}).items():
                if bytes(shown[since:]).rstrip().endswith(prompt.rstrip()):
                    os.write(master, answer + b"\r")
                    answered += 1
                    since = len(shown)  # each prompt is answered once
        code = proc.wait(timeout=CLI_WAIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return code, bytes(shown), answered


def every_file(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabHandle]:
    faults = {
        "faults": [
            {"hosts": [AUTH_REFUSED], "auth_refused": True},
            {"hosts": [UNREACHABLE], "unreachable": True},
        ]
    }
    with running_lab(
        hosts=HOSTS, mix="win10-ent:3,xp-pro:1", password=PASSWORD, faults=faults, seed=5
    ) as lab:
        yield lab


def test_the_password_never_leaks(fleet: LabHandle, tmp_path: Path) -> None:
    lab = fleet
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    inventory = lab_inventory(
        lab,
        cwd / "fleet.yaml",
        [
            {"name": "w1", "hosts": lab.hosts[:3], "max_fail_percentage": 100},
            {"name": "w2", "rest": True, "max_fail_percentage": 100},
        ],
    )
    home = cwd / ".raorch"  # the default place, inside the working directory
    env = base_env(home, PASSWORD)
    inv = ("--inventory", str(inventory))
    streams: list[tuple[str, bytes]] = []

    def cli(*args: str, env: dict[str, str] = env, codes: tuple[int, ...] = (0, 1, 4, 5, 7)) -> Any:
        done = run(cwd, env, *args)
        streams.append((f"{args} stdout", done.stdout))
        streams.append((f"{args} stderr", done.stderr))
        assert done.returncode in codes, (args, done.returncode, done.stderr[-2000:])
        return done

    # ---- the right password: every command, plain and --json
    cli("validate", *inv, codes=(0,))
    cli("plan", *inv)
    cli("plan", *inv, "--json")
    cli("rollout", *inv, "--wave", "w1", "--no-dashboard")
    rolled = cli("rollout", *inv, "--wave", "w2", "--json")
    summary = json.loads(rolled.stdout)
    assert summary["failed_hosts"] == [AUTH_REFUSED, UNREACHABLE]  # the faults did happen
    journal_reasons = json.dumps(summary)
    assert AUTH_REFUSED in journal_reasons
    cli("verify", *inv)
    cli("verify", *inv, "--json")
    cli("status", "--json", codes=(0, 1, 3, 6))
    cli("history", codes=(0,))
    cli("show", summary["rollout"], "--host", AUTH_REFUSED, codes=(0,))
    cli("rollback", "--last", "--json", "--no-dashboard")
    # The change report, written in the working directory: searched with every file there.
    cli("report", "--last", codes=(0,))
    assert list(cwd.glob("raorch-report-*.html"))

    # ---- the lab refuses every login
    lab.set_faults({"faults": [{"share": 1.0, "auth_refused": True}]})
    try:
        refused = cli("plan", *inv, "--json")
        reasons = [h["reason"] for h in json.loads(refused.stdout)["hosts"]]
        assert all(r is not None and r["stage"] in ("auth", "connect") for r in reasons), reasons
        cli("verify", *inv)
    finally:
        lab.set_faults(None)

    # ---- a wrong password: another journal, a whole rollout of it, and the live dashboard
    wrong_env = base_env(cwd / "home-wrong", WRONG)
    wrong = cli("plan", *inv, "--json", env=wrong_env)
    stages = {h["reason"]["stage"] for h in json.loads(wrong.stdout)["hosts"] if h["reason"]}
    assert "auth" in stages, wrong.stdout[-2000:]
    cli("verify", *inv, "--json", env=wrong_env)
    cli("rollout", *inv, "--wave", "w1", "--json", env=wrong_env, codes=(1, 3))
    code, shown, _ = run_in_terminal(cwd, wrong_env, "rollout", *inv, "--wave", "w1", "--force")
    assert code in (0, 1, 3, 6), shown[-2000:]
    streams.append(("dashboard (wrong password)", shown))
    code, shown, _ = run_in_terminal(cwd, env, "plan", *inv)
    streams.append(("plan in a terminal", shown))

    # ---- search
    needles = forms(PASSWORD, lab.username) + forms(WRONG, lab.username)
    files = list(every_file(cwd))
    assert any(p.name == "state.db" for p in files) and any(p.name == "log.jsonl" for p in files), (
        files
    )
    leaks = [
        (str(path), needle) for path in files for needle in needles if needle in path.read_bytes()
    ]
    leaks += [(name, needle) for name, data in streams for needle in needles if needle in data]
    assert leaks == []
    # and no raw library traceback on any stream (pypsrp logs one per failed request)
    assert [name for name, data in streams if b"Traceback" in data] == []


def modes(home: Path) -> dict[str, int]:
    return {
        str(p.relative_to(home.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [home, *home.rglob("*")]
        if p.exists()
    }


def test_state_directory_is_private_even_under_umask_000(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory(
        hosts=4, mix="win10-ent:1", faults={"faults": [{"share": 1.0, "latency_ms": 300}]}
    )
    home = tmp_path / "home"
    inventory = lab_inventory(lab, tmp_path / "fleet.yaml", [{"name": "w", "rest": True}])
    env = base_env(home, lab.password)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raorch",
            "rollout",
            "--inventory",
            str(inventory),
            "--wave",
            "w",
            "--no-dashboard",
            "--concurrency",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(0),  # nothing but raorch's own modes protects the files
    )
    # While it runs, the journal is open in WAL mode: -wal and -shm exist.
    db = home / "state.db"
    seen: dict[str, int] = {}
    end = time.monotonic() + CLI_WAIT
    while proc.poll() is None and time.monotonic() < end:
        current = modes(home) if home.exists() else {}
        seen.update(current)
        if all(f"home/state.db{s}" in seen for s in ("-wal", "-shm")) and any(
            k.endswith("log.jsonl") for k in seen
        ):
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=CLI_WAIT)
    assert proc.returncode == 0, err.decode()[-2000:]
    seen.update(modes(home))
    assert db.exists()
    assert {"home/state.db-wal", "home/state.db-shm"} <= set(seen), seen
    rollouts = [k for k in seen if k.startswith("home/rollouts")]
    assert rollouts and any(k.endswith("/log.jsonl") for k in rollouts), seen
    wrong = {
        name: f"{mode:04o}"
        for name, mode in seen.items()
        if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)
    }
    assert wrong == {}


def test_certificate_validation_is_on_by_default(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory(hosts=4, mix="win10-ent:1")
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    conn = data["defaults"]["connection"]
    assert conn["scheme"] == "https" and conn.pop("ca_bundle")
    conn.pop("cert_validation", None)  # the default
    data.update(playbook=str(PLAYBOOK_FILE), waves=[{"name": "w", "rest": True}])
    inventory = tmp_path / "no-ca.yaml"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = base_env(tmp_path / "home", lab.password)
    done = run(tmp_path, env, "plan", "--inventory", str(inventory), "--json")
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    hosts = json.loads(done.stdout)["hosts"]
    assert len(hosts) == 4
    for host in hosts:
        assert host["outcome"] == "failed" and host["reason"]["stage"] == "connect", host
        assert "certificate is not trusted" in host["reason"]["message"], host
    assert all(lab.state(h)["runtime"]["sessions"] == 0 for h in lab.hosts)  # nothing opened

    # turning validation off is refused at load time unless insecure: true says so
    conn["cert_validation"] = False
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    refused = run(tmp_path, env, "validate", "--inventory", str(inventory))
    assert refused.returncode == 2
    assert b"no-ca.yaml:" in refused.stderr and b"insecure: true" in refused.stderr


WARNING = b"warning: 4 host(s) use an insecure connection (insecure: true)"


def test_basic_over_http_needs_insecure_and_warns_on_every_run(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory(hosts=4, mix="win10-ent:1", scheme="http", auth="basic")
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    assert data["defaults"]["connection"]["insecure"] is True
    inventory = lab_inventory(
        lab,
        tmp_path / "basic.yaml",
        [{"name": "w1", "hosts": lab.hosts[:2]}, {"name": "w2", "rest": True}],
    )
    env = base_env(tmp_path / "home", lab.password)
    inv = ("--inventory", str(inventory))
    runs = [
        ("plan", *inv),
        ("plan", *inv, "--json"),
        ("rollout", *inv, "--wave", "w1", "--no-dashboard"),
        ("rollout", *inv, "--wave", "w2", "--json"),
        ("verify", *inv),
        ("verify", *inv, "--json"),
        ("rollback", "--last", "--no-dashboard"),
    ]
    for args in runs:
        done = run(tmp_path, env, *args)
        assert done.returncode in (0, 4), (args, done.stderr.decode()[-2000:])
        warning = WARNING if args[0] != "rollout" else WARNING.replace(b"4 host", b"2 host")
        assert done.stderr.count(warning) == 1, (args, done.stderr.decode())
        assert WARNING[:20] not in done.stdout  # stdout stays clean (--json parses)
        if "--json" in args:
            json.loads(done.stdout)

    # without insecure: true, Basic over HTTP is refused where it is written
    text = inventory.read_text(encoding="utf-8").replace("insecure: true", "insecure: false")
    inventory.write_text(text, encoding="utf-8")
    refused = run(tmp_path, env, "plan", *inv)
    assert refused.returncode == 2
    assert b"basic.yaml:" in refused.stderr and b"insecure: true" in refused.stderr
    assert sum(lab.state(h)["runtime"]["requests"] for h in lab.hosts) > 0
    before = lab.stats()["total_requests"]
    assert run(tmp_path, env, "plan", *inv).returncode == 2
    assert lab.stats()["total_requests"] == before  # refused before contacting any host


def test_prompt_asks_once_per_distinct_account_in_a_terminal(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory(hosts=4, mix="win10-ent:1")
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["defaults"]["credentials"]["password"] = "prompt"
    # the same account spelled in another case: still one account, one question
    data["hosts"]["lab-0002"]["credentials"] = {
        "username": lab.username.upper(),
        "password": "prompt",
    }
    # another account: asked separately (the lab does not know it: auth fails)
    data["hosts"]["lab-0004"]["credentials"] = {"username": "CORP\\jdoe", "password": "prompt"}
    data.update(playbook=str(PLAYBOOK_FILE), waves=[{"name": "w", "rest": True}])
    inventory = tmp_path / "prompt.yaml"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = base_env(tmp_path / "home", "")
    del env["RAORCH_LAB_PASSWORD"]
    answers = {
        f"Password for {lab.username}:".encode(): lab.password.encode(),
        b"Password for CORP\\jdoe:": b"not-the-password",
    }
    code, shown, answered = run_in_terminal(
        tmp_path, env, "plan", "--inventory", str(inventory), "--json", answers=answers
    )
    text = shown.decode(errors="replace")
    assert answered == 2, text
    assert text.count("Password for ") == 2, text
    assert lab.password not in text and "not-the-password" not in text  # never echoed
    assert code == 1, text  # lab-0004's account is refused
    document = json.loads(text[text.index("{") :])
    outcomes = {h["host"]: (h["outcome"], h["reason"]) for h in document["hosts"]}
    assert outcomes["lab-0004"][0] == "failed" and outcomes["lab-0004"][1]["stage"] == "auth"
    assert {outcomes[h][0] for h in ("lab-0001", "lab-0002", "lab-0003")} <= {
        "changed",
        "unchanged",
        "skipped",
    }

    # without a terminal, prompt is refused with a located reason, before any host
    before = lab.stats()["total_requests"]
    done = run(tmp_path, env, "plan", "--inventory", str(inventory))
    assert done.returncode == 2, done.stderr
    assert b"cannot ask (not interactive)" in done.stderr
    assert lab.stats()["total_requests"] == before


# A keyring backend of the real ``keyring`` package (raorch's optional extra), selected as a user
# would (PYTHON_KEYRING_BACKEND); it reads a JSON file instead of a desktop keyring, which a
# test machine does not have.
KEYRING_BACKEND = """
import json
import os

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        with open(os.environ["RAORCH_TEST_KEYRING"], encoding="utf-8") as handle:
            return json.load(handle).get(service + "\\n" + username)

    def set_password(self, service, username, password):
        raise NotImplementedError

    def delete_password(self, service, username):
        raise NotImplementedError
"""


def test_keyring_reference_through_the_keyring_package(lab_factory: Any, tmp_path: Path) -> None:
    import keyring  # noqa: F401  (the dev extras install it; missing, this test fails)

    lab = lab_factory(hosts=4, mix="win10-ent:1")
    backend = tmp_path / "backend"
    backend.mkdir()
    (backend / "raorch_test_keyring.py").write_text(KEYRING_BACKEND, encoding="utf-8")
    store = tmp_path / "keyring.json"
    store.write_text(json.dumps({f"raorch-lab\n{lab.username}": lab.password}), "utf-8")
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["defaults"]["credentials"]["password"] = "keyring:raorch-lab"
    data.update(playbook=str(PLAYBOOK_FILE), waves=[{"name": "w", "rest": True}])
    inventory = tmp_path / "keyring.yaml"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = base_env(cwd / ".raorch", "")
    del env["RAORCH_LAB_PASSWORD"]
    env.update(
        PYTHONPATH=str(backend),
        PYTHON_KEYRING_BACKEND="raorch_test_keyring.FileKeyring",
        RAORCH_TEST_KEYRING=str(store),
    )
    done = run(cwd, env, "plan", "--inventory", str(inventory), "--json")
    assert done.returncode in (0, 4), done.stderr.decode()[-2000:]
    hosts = json.loads(done.stdout)["hosts"]
    assert [h["outcome"] for h in hosts if h["outcome"] == "failed"] == [], hosts
    assert all(needle not in done.stdout + done.stderr for needle in forms(lab.password, ""))

    # no entry for the account: refused before any host, saying how to store it
    store.write_text(json.dumps({}), "utf-8")
    before = lab.stats()["total_requests"]
    missing = run(cwd, env, "plan", "--inventory", str(inventory))
    assert missing.returncode == 2
    assert b"keyring:raorch-lab has no password for" in missing.stderr
    assert b"keyring set raorch-lab" in missing.stderr
    assert lab.stats()["total_requests"] == before


def test_file_reference_owner_only(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory(hosts=4, mix="win10-ent:1")
    secret = tmp_path / "secrets" / "lab-password"
    secret.parent.mkdir()
    secret.write_text(lab.password + "\n", encoding="utf-8")
    data = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    data["defaults"]["credentials"]["password"] = "file:secrets/lab-password"  # relative
    data.update(playbook=str(PLAYBOOK_FILE), waves=[{"name": "w", "rest": True}])
    inventory = tmp_path / "file.yaml"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = base_env(tmp_path / "home", "")
    del env["RAORCH_LAB_PASSWORD"]
    before = lab.stats()["total_requests"]
    for mode in (0o644, 0o640, 0o602):
        secret.chmod(mode)
        loose = run(tmp_path, env, "plan", "--inventory", str(inventory))
        assert loose.returncode == 2, (oct(mode), loose.stderr)
        assert b"readable or writable by others" in loose.stderr
        assert b"chmod 600" in loose.stderr
        assert lab.password.encode() not in loose.stderr + loose.stdout
    assert lab.stats()["total_requests"] == before  # refused before contacting a host
    secret.chmod(0o600)
    done = run(tmp_path, env, "plan", "--inventory", str(inventory), "--json")
    assert done.returncode in (0, 4), done.stderr.decode()[-2000:]
    assert all(h["outcome"] != "failed" for h in json.loads(done.stdout)["hosts"])
