"""Loading a large inventory: raorch's `load_inventory` (positions kept for every value,
duplicate keys refused, every host resolved) against PyYAML's C loader reading the same file
(`yaml.load(..., Loader=yaml.CSafeLoader)`: plain data, nothing checked), in one run, with
the peak memory of each in its own child process.

    python bench/inventory_load.py [HOSTS] [RUNS]

Target (issue: operator mistakes, item 8): at 100,000 hosts, at most 3x the C loader's time
and at most 1 GB. Prints the median of RUNS for each and the ratio.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
which, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
start = time.perf_counter()
if which == "csafeloader":
    import yaml
    data = yaml.load(text, Loader=yaml.CSafeLoader)
    count = len(data["hosts"])
else:
    from raorch.models.load import load_inventory
    count = len(load_inventory(path).targets)
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "rss_mb": rss, "hosts": count}))
"""


def write_inventory(directory: Path, hosts: int) -> Path:
    lines = [
        "playbook: pb.yaml",
        "domains: [CORP]",
        "defaults:",
        "  connection: {scheme: https, port: 5986, auth: ntlm}",
        "  credentials: {username: 'CORP\\\\svc', password: 'env:PW'}",
        "hosts:",
    ]
    for i in range(hosts):
        address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        lines.append(f"  ws-{i:06d}.corp.example.com: {{address: {address}}}")
    lines += [
        "waves:",
        "  - {name: canary, hosts: [ws-000000.corp.example.com], max_fail_percentage: 0}",
        "  - {name: broad, rest: true, max_fail_percentage: 5}",
    ]
    (directory / "pb.yaml").write_bytes(
        (ROOT / "playbooks/offer-remote-assistance.yaml").read_bytes()
    )
    path = directory / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(which: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = write_inventory(Path(tmp), hosts)
        size = path.stat().st_size / 1e6
        results: dict[str, list[dict[str, float]]] = {"csafeloader": [], "raorch": []}
        for _ in range(runs):  # interleaved, so that both see the same machine
            for which in results:
                results[which].append(measure(which, path))
    c = statistics.median(r["seconds"] for r in results["csafeloader"])
    r = statistics.median(r["seconds"] for r in results["raorch"])
    print(f"{hosts} hosts, {size:.1f} MB, median of {runs}")
    for label, which, seconds in (
        ("yaml CSafeLoader", "csafeloader", c),
        ("load_inventory", "raorch", r),
    ):
        peak = max(x["rss_mb"] for x in results[which])
        print(f"  {label:<17} {seconds:6.2f} s  peak RSS {peak:.0f} MB")
    print(f"  ratio {r / c:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
