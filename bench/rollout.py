"""Rollout benchmark (issue 8): raorch against plain pypsrp and the baselines, in one run.

    python bench/rollout.py --hosts N --latency-ms L --concurrency C [--repeat 3]
                            [--auth ntlm] [--scheme https] [--waves 1|3]
                            [--baseline-hosts K] [--skip floor,sequential,per-setting]

Every measured run gets a FRESH lab (a new child process and state directory, same seed and
mix: the same initial fleet), with L ms added to every HTTP request. Each system runs as its
own child process, measured with ``os.wait4`` (that child's user+system CPU and peak RSS):

* floor: plain pypsrp, a thread pool of C, one WSMan + RunspacePool per host and exactly the
  pipelines raorch sends (built beforehand with raorch's planning and wire functions, in a
  prepass on a separate fresh lab), no raorch code in the process;
* raorch: ``python -m raorch rollout`` over one wave holding every host (or the lab's three
  waves, canary/pilot/broad, back to back: ``--waves 3``);
* sequential: the same sessions as the floor, one after another (a hand-written script), on the
  first K hosts;
* per-setting: one WSMan + RunspacePool per operation (Ansible's connection-per-task model),
  C threads, on the first K hosts.

HTTP requests are counted by the lab. Figures are medians over ``--repeat`` runs; ratios are
computed within each run, then their median taken. The last line is the headline.

    python bench/rollout.py --workers W [--sites S] [--worker-concurrency K] [--broker URL]
                            --hosts N --latency-ms L --concurrency C [--waves 1|3]

``--workers W`` measures raorch with workers per site instead (issue 20), in one run: a fresh
lab whose hosts are dealt to S sites in turn, W ``raorch worker`` processes dealt to the sites in
turn (K hosts at a time each), the controller ``raorch rollout --broker`` wave by wave; the
controller's own CPU per host (all of it, and less its start: a rerun of the last wave with
nothing left to do), the workers' CPU per host (summed, read from /proc from the first wave's
start to the last one's end, and with their start and stop), hosts per second, peak RSS of
each, the lab's and the broker's CPU; then the in-process engine (``raorch rollout`` without
``--broker``) on a fresh lab of the same fleet, unless ``--skip in-process``. W must be at
least S (a site without a worker would hold its hosts until their deadline). The broker:
``--broker URL``, else a RabbitMQ of its own on loopback (tests/integration/rabbitmq.py:
Debian's rabbitmq-server, as root).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEMS = ("floor", "raorch", "sequential", "per-setting")


# ---------------------------------------------------------------- plain pypsrp worker


def worker_main(job_path: str) -> None:
    """A plain pypsrp process (no raorch import): runs the job, prints a JSON line."""
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    with open(job_path, "rb") as f:
        job = pickle.load(f)
    script: str = job["script"]
    mode: str = job["mode"]
    hosts: list[dict[str, Any]] = job["hosts"]

    construct = threading.Lock()

    def session(kwargs: dict[str, Any], pipelines: list[list[Any]]) -> int:
        errors = 0
        with construct:  # pypsrp's WSMan.__init__ is not thread-safe (see transport/session.py)
            wsman = WSMan(**kwargs)
        with wsman, RunspacePool(wsman) as pool:
            for ops in pipelines:
                ps = PowerShell(pool)
                ps.add_script(script).add_parameter("Operations", ops)
                out = ps.invoke()
                if ps.had_errors or len(out) != len(ops):
                    errors += 1
        return errors

    def one(host: dict[str, Any]) -> int:
        pipelines = [p for p in host["pipelines"] if p]
        try:
            if mode == "per-setting":
                return sum(session(host["kwargs"], [[op]]) for p in pipelines for op in p)
            return session(host["kwargs"], pipelines)
        except Exception as exc:
            print(f"{host['name']}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

    started = time.monotonic()
    if mode == "sequential":
        errors = sum(one(h) for h in hosts)
    else:
        with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
            errors = sum(pool.map(one, hosts))
    print(json.dumps({"errors": errors, "work_seconds": time.monotonic() - started}))


# ---------------------------------------------------------------- measuring a child


@dataclass
class ChildRun:
    wall: float
    cpu: float
    maxrss_mb: float
    returncode: int
    stdout: str
    stderr: str


def child_env(**extra: str) -> dict[str, str]:
    """Children compile their imports once (a private pycache: ``PYTHONDONTWRITEBYTECODE``
    would make every process compile raorch again, which users do not pay)."""
    env = dict(os.environ, **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "raorch-bench-pycache")
    return env


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``cmd``; its own CPU and peak RSS from ``os.wait4`` (not shared with the lab)."""
    env = env or child_env()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no child behind
            proc.kill()
            proc.wait()
            raise
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


# ---------------------------------------------------------------- the fleet and its work


@dataclass
class Fleet:
    """What the prepass learned: each host's pipelines, as wire hashtables."""

    script: str
    pipelines: dict[str, list[list[Any]]]  # host -> [pipeline 1, pipeline 2 (maybe empty)]


def lab_context(args: argparse.Namespace, latency_ms: float) -> Any:
    from raorch.lab import api, running_lab

    # A lab of 10,000 hosts on a busy 2-core machine takes minutes to listen on every port.
    api.READY_TIMEOUT = max(api.READY_TIMEOUT, 120 + args.hosts * 0.1)

    faults = {"faults": [{"share": 1.0, "latency_ms": latency_ms}]} if latency_ms > 0 else None
    return running_lab(
        hosts=args.hosts,
        mix=args.mix,
        auth=args.auth,
        scheme=args.scheme,
        faults=faults,
        seed=args.seed,
    )


def prepass(args: argparse.Namespace, hosts: int) -> Fleet:
    """Learn the pipelines raorch sends to each of the first ``hosts`` hosts: pipeline 1 (the
    snapshot reads), then, from raorch's own pre-flight and plan, pipeline 2 (writes + verify
    reads). On a fresh lab without latency, thrown away afterwards."""
    from raorch.models.load import load_inventory, load_playbook, resolve_playbook_path
    from raorch.models.outcomes import Stage
    from raorch.planning.plan import make_plan
    from raorch.planning.preflight import preflight
    from raorch.planning.snapshot import build_snapshot, snapshot_reads
    from raorch.transport.script import batch_script
    from raorch.transport.session import HostSession
    from raorch.transport.wire import to_wire

    with lab_context(args, 0) as lab:
        inventory = load_inventory(lab.inventory_path)
        playbook = load_playbook(resolve_playbook_path(inventory, None))
        reads = snapshot_reads(playbook)
        names = list(inventory.targets)[:hosts]

        def learn(name: str) -> list[list[Any]]:
            target = inventory.targets[name]
            with HostSession(target, lab.password) as s:
                snap = build_snapshot(name, s.run(reads, Stage.SNAPSHOT))
            verdict = preflight(snap, playbook, inventory.domains)
            second: list[Any] = []
            if not verdict.refused and verdict.profile is not None:
                plan = make_plan(playbook, verdict.profile, snap)
                if plan.changes:
                    second = [to_wire(op) for op in (*plan.operations(), *plan.verify_reads())]
            return [[to_wire(op) for op in reads], second]

        with ThreadPoolExecutor(max_workers=min(64, args.concurrency)) as pool:
            found = dict(zip(names, pool.map(learn, names), strict=True))
    return Fleet(batch_script(), found)


def plain_job(lab: Any, fleet: Fleet, names: list[str], mode: str, concurrency: int) -> Path:
    from raorch.models.load import load_inventory
    from raorch.transport.endpoint import endpoint_for

    inventory = load_inventory(lab.inventory_path)
    hosts = []
    for name in names:
        kwargs = endpoint_for(inventory.targets[name]).wsman_kwargs()
        kwargs["password"] = lab.password
        hosts.append({"name": name, "kwargs": kwargs, "pipelines": fleet.pipelines[name]})
    path = Path(lab.state_dir) / f"job-{mode}.pickle"
    with path.open("wb") as f:
        pickle.dump(
            {"script": fleet.script, "mode": mode, "concurrency": concurrency, "hosts": hosts}, f
        )
    return path


# ---------------------------------------------------------------- one measurement


@dataclass
class Sample:
    hosts: int
    wall: float
    cpu: float
    maxrss_mb: float
    requests: int
    lab_cpu: float
    errors: int

    @property
    def hosts_per_s(self) -> float:
        return self.hosts / self.wall

    @property
    def cpu_ms_per_host(self) -> float:
        return self.cpu / self.hosts * 1000

    @property
    def requests_per_host(self) -> float:
        return self.requests / self.hosts


def measure_plain(args: argparse.Namespace, fleet: Fleet, mode: str, count: int) -> Sample:
    with lab_context(args, args.latency_ms) as lab:
        names = lab.hosts[:count]
        job = plain_job(lab, fleet, names, mode, args.concurrency)
        before = lab.stats()
        run = run_child([sys.executable, __file__, "--worker", str(job)])
        after = lab.stats()
    if run.returncode != 0:
        raise SystemExit(f"the {mode} worker failed ({run.returncode}):\n{run.stderr[-3000:]}")
    errors = int(json.loads(run.stdout.strip().splitlines()[-1])["errors"])
    return Sample(
        len(names),
        run.wall,
        run.cpu,
        run.maxrss_mb,
        after["total_requests"] - before["total_requests"],
        after["cpu_seconds"] - before["cpu_seconds"],
        errors,
    )


def raorch_inventory(lab: Any, waves: int) -> tuple[Path, list[str]]:
    import yaml

    data = yaml.safe_load(Path(lab.inventory_path).read_text(encoding="utf-8"))
    if waves == 1:
        data["waves"] = [{"name": "all", "rest": True, "max_fail_percentage": 100}]
    path = Path(lab.state_dir) / f"bench-inventory-{waves}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, [w["name"] for w in data["waves"]]


def measure_raorch(args: argparse.Namespace) -> Sample:
    with lab_context(args, args.latency_ms) as lab:
        inventory, waves = raorch_inventory(lab, args.waves)
        env = child_env(
            RAORCH_LAB_PASSWORD=lab.password,
            RAORCH_HOME=str(Path(lab.state_dir) / "raorch-home"),
        )
        before = lab.stats()
        wall = cpu = rss = 0.0
        errors = 0
        for wave in waves:
            cmd = [sys.executable, "-m", "raorch", "rollout", "--inventory", str(inventory)]
            cmd += ["--wave", wave, "--concurrency", str(args.concurrency)]
            cmd += ["--no-dashboard", "--json"]
            run = run_child(cmd, env)
            wall, cpu, rss = wall + run.wall, cpu + run.cpu, max(rss, run.maxrss_mb)
            try:
                summary = json.loads(run.stdout)
            except ValueError:
                raise SystemExit(
                    f"raorch rollout --wave {wave} failed ({run.returncode}):\n"
                    f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
                ) from None
            errors += int(summary["counts"].get("failed", 0))
            if summary["state"] != "done" or run.returncode != 0:
                errors += 1
                print(f"wave {wave}: {summary['state']}, exit {run.returncode}", file=sys.stderr)
        after = lab.stats()
    return Sample(
        args.hosts,
        wall,
        cpu,
        rss,
        after["total_requests"] - before["total_requests"],
        after["cpu_seconds"] - before["cpu_seconds"],
        errors,
    )


# ---------------------------------------------------------------- workers per site (issue 20)


@dataclass
class WorkersSample:
    hosts: int
    workers: int
    wall: float  # the controller's runs
    controller_cpu: float
    workers_cpu: float  # summed, their start and stop included
    workers_run_cpu: float  # summed, from the first wave's start to the last one's end
    controller_start_cpu: float  # a rerun of the last wave with nothing left to do
    errors: int
    controller_rss_mb: float = 0.0  # the largest of the controller's runs (one per wave)
    worker_rss_mb: tuple[float, ...] = ()  # each worker's peak
    lab_cpu: float = 0.0  # the lab's CPU over the controller's runs
    broker_cpu: float | None = None  # RabbitMQ's VM over the same span (its own broker only)
    waves: tuple[tuple[str, int, float], ...] = ()  # (wave, hosts done, wall s)

    def per_host_ms(self, seconds: float) -> float:
        return seconds / self.hosts * 1000


def _broker(args: argparse.Namespace) -> Any:
    import contextlib

    if args.broker:
        return contextlib.nullcontext((args.broker, None))

    @contextlib.contextmanager
    def own() -> Any:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
        import rabbitmq

        missing = rabbitmq.missing()
        if missing:
            raise SystemExit(f"--workers needs a broker: --broker URL, or {missing}")
        server = rabbitmq.start()
        try:
            yield server.url, server._vm_pid()
        finally:
            server.stop()

    return own()


def _start_worker(site: str, url: str, concurrency: int, env: dict[str, str], out: Path) -> Any:
    log = out.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raorch", "worker", "--site", site, "--broker", url,
         "--concurrency", str(concurrency)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 120
    while "raorch worker: ready" not in out.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"a worker did not start:\n{out.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc


def _stop_worker(proc: Any) -> tuple[float, float]:
    """SIGTERM (Celery's warm shutdown), then its own CPU (s) and peak RSS (MB) from
    ``os.wait4``."""
    proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    return float(usage.ru_utime + usage.ru_stime), usage.ru_maxrss / 1024


def _process_cpu(pid: int | None) -> float | None:
    """A process's user + system CPU (s) from /proc (the broker's VM is not our child)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_workers(args: argparse.Namespace) -> WorkersSample:
    import yaml

    sites = [f"site{i + 1}" for i in range(args.sites)]
    with _broker(args) as (url, broker_pid), lab_context(args, args.latency_ms) as lab:
        state = Path(lab.state_dir)
        data = yaml.safe_load(Path(lab.inventory_path).read_text(encoding="utf-8"))
        names = list(data["hosts"])
        data["groups"] = {
            site: {"hosts": names[i :: len(sites)], "site": site} for i, site in enumerate(sites)
        }
        if args.waves == 1:
            data["waves"] = [{"name": "all", "rest": True, "max_fail_percentage": 100}]
        inventory = state / "bench-workers-inventory.yaml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        waves = [w["name"] for w in data["waves"]]
        env = child_env(RAORCH_LAB_PASSWORD=lab.password, RAORCH_HOME=str(state / "raorch-home"))
        workers = []
        for i in range(args.workers):
            log = state / f"worker-{i}.out"
            site = sites[i % len(sites)]
            workers.append(_start_worker(site, url, args.worker_concurrency, env, log))
        wall = cpu = rss = 0.0
        errors = 0
        per_wave: list[tuple[str, int, float]] = []
        lab_before = lab.stats()["cpu_seconds"]
        broker_before = _process_cpu(broker_pid)
        # The workers' CPU while the controller runs (read from /proc: their start and stop,
        # Celery's imports and connections, are left out without guessing them).
        workers_before = [_process_cpu(w.pid) or 0.0 for w in workers]

        def rollout(wave: str) -> ChildRun:
            cmd = [sys.executable, "-m", "raorch"]
            if args.profile_controller is not None:
                # Each thread's CPU by function (bench/cpu_profile.py): for finding where the
                # controller's time goes; cProfile's overhead inflates such a run's figures.
                runs = len(list(Path(args.profile_controller).glob("controller-*.MainThread.prof")))
                out = Path(args.profile_controller) / f"controller-{runs + 1}-{wave}"
                profiler = str(Path(__file__).with_name("cpu_profile.py"))
                cmd = [sys.executable, profiler, str(out), "-m", "raorch"]
            cmd += ["rollout", "--inventory", str(inventory)]
            cmd += ["--wave", wave, "--concurrency", str(args.concurrency), "--broker", url]
            cmd += ["--no-dashboard", "--json", "--deadline", "600"]
            return run_child(cmd, env)

        try:
            for wave in waves:
                run = rollout(wave)
                wall, cpu, rss = wall + run.wall, cpu + run.cpu, max(rss, run.maxrss_mb)
                try:
                    summary = json.loads(run.stdout)
                except ValueError:
                    raise SystemExit(
                        f"raorch rollout --broker --wave {wave} failed ({run.returncode}):\n"
                        f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
                    ) from None
                errors += int(summary["counts"].get("failed", 0))
                if summary["state"] != "done" or run.returncode != 0:
                    errors += 1
                    print(
                        f"wave {wave}: {summary['state']}, exit {run.returncode}", file=sys.stderr
                    )
                done = sum(int(v) for v in summary["counts"].values())
                per_wave.append((wave, done, run.wall))
                print(
                    f"wave {wave}: {done} hosts {dict(summary['counts'])}, wall {run.wall:.1f} s, "
                    f"controller CPU {run.cpu:.1f} s, RSS {run.maxrss_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
            lab_cpu = lab.stats()["cpu_seconds"] - lab_before
            broker_after = _process_cpu(broker_pid)
            workers_run = sum(
                (_process_cpu(w.pid) or 0.0) - b
                for w, b in zip(workers, workers_before, strict=True)
            )
            # The controller's start and end without hosts (imports, the inventory, the journal,
            # the broker's connection): the last wave again, every host of it done.
            again = rollout(waves[-1])
            if again.returncode != 0:
                raise SystemExit(f"the rerun of wave {waves[-1]} failed:\n{again.stderr[-3000:]}")
        finally:
            stopped = [_stop_worker(w) for w in workers]
    broker_cpu = (
        None if broker_before is None or broker_after is None else broker_after - broker_before
    )
    return WorkersSample(
        args.hosts,
        args.workers,
        wall,
        cpu,
        sum(c for c, _ in stopped),
        workers_run,
        again.cpu,
        errors,
        rss,
        tuple(r for _, r in stopped),
        lab_cpu,
        broker_cpu,
        tuple(per_wave),
    )


def report_workers(
    args: argparse.Namespace, s: WorkersSample, inproc: Sample | None = None
) -> None:
    controller = s.per_host_ms(s.controller_cpu)
    # Less one start per wave (a small run is dominated by it; never below zero).
    marginal = s.per_host_ms(max(0.0, s.controller_cpu - s.controller_start_cpu * len(s.waves)))
    workers = s.per_host_ms(s.workers_run_cpu)
    raw = s.per_host_ms(s.workers_cpu)
    print()
    print(
        f"hosts {s.hosts}, {args.sites} sites, {s.workers} workers ({args.worker_concurrency} "
        f"hosts at a time each), controller concurrency {args.concurrency}, latency "
        f"{args.latency_ms:g} ms/request, waves {args.waves}, one run"
    )
    print("| wall s | hosts/s | controller CPU ms/host | controller less its starts "
          "| workers CPU ms/host (sum, during the runs) | workers, with start and stop "
          "| controller / workers CPU | controller less starts / workers | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    ratio = controller / workers if workers else math.nan
    ratio_marginal = marginal / workers if workers else math.nan
    print(
        f"| {fmt(s.wall)} | {fmt(s.hosts / s.wall, 1)} | {fmt(controller, 1)} "
        f"| {fmt(marginal, 1)} | {fmt(workers, 1)} | {fmt(raw, 1)} | {fmt(ratio)} "
        f"| {fmt(ratio_marginal)} | {s.errors} |"
    )
    print(f"controller start (a rerun with nothing to do): {fmt(s.controller_start_cpu)} s CPU")
    print()
    rss = ", ".join(fmt(r, 0) for r in s.worker_rss_mb)
    broker = "-" if s.broker_cpu is None else fmt(s.per_host_ms(s.broker_cpu), 1)
    print(
        "| controller peak RSS MB | workers' peak RSS MB | lab CPU ms/host | broker CPU ms/host |"
    )
    print("|---|---|---|---|")
    print(f"| {fmt(s.controller_rss_mb, 0)} | {rss} | {fmt(s.per_host_ms(s.lab_cpu), 1)} "
          f"| {broker} |")  # fmt: skip
    if len(s.waves) > 1:
        print()
        print("| wave | hosts | wall s | hosts/s |")
        print("|---|---|---|---|")
        for name, done, wall in s.waves:
            print(
                f"| {name} | {done} | {fmt(wall)} | {fmt(done / wall if wall else math.nan, 1)} |"
            )
    tail = ""
    if inproc is not None:
        # The in-process engine (no workers) on a fresh lab of the same fleet, in the same run.
        print()
        print("in-process engine (raorch rollout without --broker), same fleet, same run:")
        print(
            "| wall s | hosts/s | controller CPU ms/host | peak RSS MB | lab CPU ms/host | errors |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| {fmt(inproc.wall)} | {fmt(inproc.hosts_per_s, 1)} "
            f"| {fmt(inproc.cpu_ms_per_host, 1)} | {fmt(inproc.maxrss_mb, 0)} "
            f"| {fmt(inproc.lab_cpu / inproc.hosts * 1000, 1)} | {inproc.errors} |"
        )
        print()
        print("| ratio | value |")
        print("|---|---|")
        speed = (s.hosts / s.wall) / inproc.hosts_per_s
        print(f"| workers / in-process: hosts per second | {fmt(speed)} |")
        print(f"| controller with workers / in-process: CPU per host "
              f"| {fmt(controller / inproc.cpu_ms_per_host)} |")  # fmt: skip
        print(f"| workers (during the runs) / in-process: CPU per host "
              f"| {fmt(workers / inproc.cpu_ms_per_host)} |")  # fmt: skip
        tail = (
            f"; in-process {fmt(inproc.hosts_per_s, 1)} hosts/s, "
            f"{fmt(inproc.cpu_ms_per_host, 1)} ms CPU/host"
        )
    print(
        f"headline: {fmt(s.hosts / s.wall, 1)} hosts/s with {s.workers} workers; controller "
        f"{fmt(controller, 1)} ms CPU/host, workers {fmt(workers, 1)} ms CPU/host "
        f"(ratio {fmt(ratio)}){tail}; {s.errors} errors"
    )


# ---------------------------------------------------------------- report


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)

    def add_ratio(self, name: str, value: float) -> None:
        self.ratios.setdefault(name, []).append(value)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def report(args: argparse.Namespace, res: Results) -> None:
    print()
    print(
        f"hosts {args.hosts}, {args.scheme} + {args.auth}, latency {args.latency_ms:g} ms/request,"
        f" concurrency {args.concurrency}, waves {args.waves}, repeat {args.repeat}, "
        f"mix {args.mix!r}"
    )
    print(
        "| system | hosts | wall s | hosts/s | controller CPU ms/host | peak RSS MB "
        "| HTTP req/host | lab CPU ms/host | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for system in SYSTEMS:
        runs = res.samples.get(system)
        if not runs:
            continue

        def m(f: Any, runs: list[Sample] = runs) -> float:
            return median([f(s) for s in runs])

        print(
            f"| {system} | {runs[0].hosts} | {fmt(m(lambda s: s.wall))} "
            f"| {fmt(m(lambda s: s.hosts_per_s), 1)} | {fmt(m(lambda s: s.cpu_ms_per_host), 1)} "
            f"| {fmt(m(lambda s: s.maxrss_mb), 0)} | {fmt(m(lambda s: s.requests_per_host))} "
            f"| {fmt(m(lambda s: s.lab_cpu / s.hosts * 1000), 1)} "
            f"| {max(s.errors for s in runs)} |"
        )
    print()
    print("| ratio (median of per-run ratios) | value |")
    print("|---|---|")
    for name, values in res.ratios.items():
        print(f"| {name} | {fmt(median(values))} |")
    parts = []
    for key, label in (
        ("raorch / floor: controller CPU per host", "CPU/host raorch/floor"),
        ("raorch wall / ideal latency-bound wall", "wall/ideal"),
        ("raorch / sequential: hosts per second", "throughput raorch/sequential"),
        ("per-setting / raorch: HTTP requests per host", "requests per-setting/raorch"),
    ):
        if key in res.ratios:
            parts.append(f"{label} {fmt(median(res.ratios[key]))}x")
    raorch = res.samples.get("raorch")
    if raorch:
        parts.append(
            f"raorch {fmt(median([s.hosts_per_s for s in raorch]), 1)} hosts/s, "
            f"{fmt(median([s.requests_per_host for s in raorch]))} req/host, "
            f"{max(s.errors for s in raorch)} errors"
        )
    print("headline: " + "; ".join(parts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--auth", default="ntlm")
    p.add_argument("--scheme", default="https")
    p.add_argument("--waves", type=int, choices=(1, 3), default=1)
    p.add_argument(
        "--mix",
        default="win10-ent:70,win11-pro:10,server2019:6,win7-ent:4,"
        "xp-pro:3,server2003:2,xp-home:1,win10-home:2,win10-workgroup:2",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--baseline-hosts",
        type=int,
        default=None,
        help="hosts for the sequential baseline (default: enough for ~20 s); the per-setting "
        "baseline takes a fifth of them (at least 3)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated: floor,sequential,per-setting (with --workers: in-process)",
    )
    p.add_argument("--workers", type=int, default=0, help="measure raorch with W workers")
    p.add_argument("--sites", type=int, default=2, help="with --workers: sites of the fleet")
    p.add_argument("--worker-concurrency", type=int, default=8, help="hosts per worker at once")
    p.add_argument(
        "--profile-controller",
        default=None,
        metavar="DIR",
        help="with --workers: profile each controller run (each thread's CPU) into DIR",
    )
    p.add_argument("--broker", default=None, help="with --workers: amqp://... (default: its own)")
    args = p.parse_args()
    # SIGTERM unwinds like Ctrl-C: the labs and children are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.worker:
        worker_main(args.worker)
        return
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.workers:
        if args.workers < args.sites:
            # Workers are dealt to the sites in turn: a site without one would leave its hosts
            # queued until their deadline (600 s), then failed.
            p.error(
                f"--workers {args.workers} leaves a site without a worker: give at least one "
                f"per site (--workers >= --sites {args.sites}), or fewer --sites"
            )
        if skip - {"in-process"}:
            p.error("with --workers, --skip takes only in-process")
        run_child([sys.executable, "-m", "raorch", "worker", "--help"])  # warm-up
        run_child([sys.executable, "-m", "raorch", "rollout", "--help"])
        sample = measure_workers(args)
        inproc = None
        if "in-process" not in skip:
            t = time.monotonic()
            inproc = measure_raorch(args)
            print(
                f"in-process: {inproc.hosts} hosts, wall {inproc.wall:.2f} s, CPU "
                f"{inproc.cpu_ms_per_host:.1f} ms/host, {inproc.errors} errors "
                f"({time.monotonic() - t:.0f} s with lab start)",
                file=sys.stderr,
                flush=True,
            )
        report_workers(args, sample, inproc)
        return
    unknown = skip - set(SYSTEMS)
    if unknown or "raorch" in skip:
        p.error(f"--skip takes floor, sequential, per-setting (not {', '.join(sorted(unknown))})")

    if args.baseline_hosts is None:
        # A sequential host costs ~10 round trips of latency plus ~40 ms of CPU.
        per_host = 10 * args.latency_ms / 1000 + 0.04
        args.baseline_hosts = max(5, min(args.hosts, 50, int(20 / per_host)))
    baseline_hosts = min(args.baseline_hosts, args.hosts)
    per_setting_hosts = max(3, baseline_hosts // 5)
    # Warm-up: compile both kinds of child's imports once, outside any measurement.
    run_child([sys.executable, "-m", "raorch", "rollout", "--help"])
    run_child([sys.executable, "-c", "import pypsrp.powershell, pypsrp.wsman"])
    learn = 0
    if "floor" not in skip:
        learn = args.hosts
    elif {"sequential", "per-setting"} - skip:
        learn = baseline_hosts
    t0 = time.monotonic()
    fleet = prepass(args, learn) if learn else None
    if fleet is not None:
        print(
            f"prepass: pipelines of {learn} hosts learned in {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
        )

    res = Results()
    for i in range(args.repeat):
        run: dict[str, Sample] = {}
        for system in SYSTEMS:
            if system in skip:
                continue
            t = time.monotonic()
            if system == "raorch":
                sample = measure_raorch(args)
            else:
                assert fleet is not None
                count = {"floor": args.hosts, "sequential": baseline_hosts}.get(
                    system, per_setting_hosts
                )
                sample = measure_plain(args, fleet, system, count)
            run[system] = sample
            res.samples.setdefault(system, []).append(sample)
            print(
                f"run {i + 1}/{args.repeat} {system}: {sample.hosts} hosts, wall "
                f"{sample.wall:.2f} s, CPU {sample.cpu_ms_per_host:.1f} ms/host, RSS "
                f"{sample.maxrss_mb:.0f} MB, {sample.requests_per_host:.2f} req/host, "
                f"{sample.errors} errors ({time.monotonic() - t:.0f} s with lab start)",
                file=sys.stderr,
                flush=True,
            )
        r = run["raorch"]
        if "floor" in run:
            f = run["floor"]
            res.add_ratio(
                "raorch / floor: controller CPU per host", r.cpu_ms_per_host / f.cpu_ms_per_host
            )
            res.add_ratio("raorch / floor: wall time", r.wall / f.wall)
            res.add_ratio(
                "raorch / floor: HTTP requests per host", r.requests_per_host / f.requests_per_host
            )
        if args.latency_ms > 0:
            ideal = (
                math.ceil(args.hosts / args.concurrency)
                * r.requests_per_host
                * args.latency_ms
                / 1000
            )
            res.add_ratio("raorch wall / ideal latency-bound wall", r.wall / ideal)
        if "sequential" in run:
            res.add_ratio(
                "raorch / sequential: hosts per second",
                r.hosts_per_s / run["sequential"].hosts_per_s,
            )
        if "per-setting" in run:
            ps = run["per-setting"]
            res.add_ratio(
                "per-setting / raorch: HTTP requests per host",
                ps.requests_per_host / r.requests_per_host,
            )
            res.add_ratio("raorch / per-setting: hosts per second", r.hosts_per_s / ps.hosts_per_s)
    report(args, res)


if __name__ == "__main__":
    main()
