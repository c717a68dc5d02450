"""The lab's console when a client dies mid-request (issue: operator mistakes, item 13): a
killed rollout left aiohttp tracebacks ("Connection lost") in `raorch lab up`'s output, one
per connection; now one line per dropped connection, naming the host."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import yaml

WAIT = 60.0


def test_a_client_dropped_mid_request_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yaml"
    out = (tmp_path / "lab.log").open("w")
    env = {**os.environ, "RAORCH_LAB_PASSWORD": "Lab-pass-1"}
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raorch",
            "lab",
            "up",
            "--hosts",
            "2",
            "--inventory-out",
            str(inventory),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not inventory.exists():
            assert time.monotonic() < deadline and lab.poll() is None, "the lab did not start"
            time.sleep(0.1)
        time.sleep(0.5)
        port = yaml.safe_load(inventory.read_text())["hosts"]["lab-0001"]["connection"]["port"]
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", port))
            context = ssl.create_default_context(cafile=str(tmp_path / "state/tls/lab-ca.pem"))
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            # A request that announces 100,000 bytes and sends 10, then a TCP reset.
            sock.sendall(
                b"POST /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                b"Content-Type: application/soap+xml;charset=UTF-8\r\n\r\n0123456789"
            )
            time.sleep(0.2)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(1.0)
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        out.close()
    text = (tmp_path / "lab.log").read_text()
    assert "Traceback" not in text, text
    dropped = [ln for ln in text.splitlines() if "dropped its connection" in ln]
    assert len(dropped) == 3, text
    assert all(ln.startswith("lab-0001: ") for ln in dropped), dropped
