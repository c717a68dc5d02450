"""What a rollout runs with, as the journal keeps it: the checked playbook, the inventory's
waves and hosts, and how each host is reached.

The journal keeps these so that:

* a changed inventory or playbook in the middle of a rollout is shown to the operator as a short
  diff of settings and hosts (``describe_changes``) before anything happens;
* rollback restores from the journal alone: the playbook each host was applied with
  (``PlaybookBook``), and how to reach a host the inventory no longer names (``target_from_json``).
  It never needs the playbook file, nor the file unchanged.

Secrets are never kept: a host's credentials are kept as their reference (``env:NAME``...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raorch.engine.store import Content, ContentRow, JournalReader
from raorch.models.inventory import (
    DEFAULT_SITE,
    AuthMethod,
    Connection,
    Credentials,
    ResolvedInventory,
    Scheme,
    SecretKind,
    SecretRef,
    Target,
)
from raorch.models.playbook import Playbook

SHOWN = 5  # items listed per line of a diff; the rest are counted


# ---------------------------------------------------------------- how a host is reached


def target_to_json(target: Target) -> str:
    conn = target.connection
    creds = target.credentials
    connection = {
        "scheme": conn.scheme.value,
        "port": conn.port,
        "auth": conn.auth.value,
        "cert_validation": conn.cert_validation,
        "ca_bundle": conn.ca_bundle,
        "connect_timeout": conn.connect_timeout,
        "operation_timeout": conn.operation_timeout,
        "insecure": conn.insecure,
        "certificate_pem": conn.certificate_pem,
        "certificate_key_pem": conn.certificate_key_pem,
        "spn_host": conn.spn_host,
    }
    return json.dumps(
        {
            "name": target.name,
            "address": target.address,
            "wave": target.wave,
            "site": target.site,
            "connection": connection,
            "credentials": None
            if creds is None
            else {
                "username": creds.username,
                # None: Kerberos from the operator's ticket cache, no password.
                "password": None
                if creds.password is None
                else {"kind": creds.password.kind.value, "target": creds.password.target},
            },
        },
        sort_keys=True,
    )


def target_from_json(text: str) -> Target:
    data = json.loads(text)
    c = data["connection"]
    connection = Connection(
        Scheme(c["scheme"]),
        int(c["port"]),
        AuthMethod(c["auth"]),
        bool(c["cert_validation"]),
        c.get("ca_bundle"),
        float(c["connect_timeout"]),
        float(c["operation_timeout"]),
        bool(c["insecure"]),
        c.get("certificate_pem"),
        c.get("certificate_key_pem"),
        c.get("spn_host"),
    )
    cr = data.get("credentials")
    ref = None if cr is None else cr.get("password")
    credentials = (
        None
        if cr is None
        else Credentials(
            cr["username"],
            None if ref is None else SecretRef(SecretKind(ref["kind"]), ref.get("target", "")),
        )
    )
    # A target the journal kept before sites existed ran where the controller was: default.
    site = str(data.get("site", DEFAULT_SITE))
    return Target(data["name"], data["address"], connection, credentials, data["wave"], site)


def _reach_digest(target: Target) -> str:
    """A short digest of how a host is reached (to tell that it changed, not to show it)."""
    data = json.loads(target_to_json(target))
    data.pop("wave")
    # Where the work runs is not how the host is reached (and digests kept before sites
    # existed stay comparable).
    data.pop("site")
    # Digested as before spn_host existed when it is not set: the hosts a journal recorded
    # then are not "reached differently" after an upgrade.
    if data["connection"].get("spn_host") is None:
        data["connection"].pop("spn_host", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the content


def content_sha(path: Path) -> str:
    """The sha-256 of a file's bytes: how the journal tells that a file changed."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inventory_json(inventory: ResolvedInventory) -> str:
    """The parts of an inventory a diff shows: domains, waves (settings and hosts), and a digest
    of how each host is reached."""
    return json.dumps(
        {
            "domains": list(inventory.domains),
            "waves": [
                {
                    "name": w.name,
                    "hosts": list(w.hosts),
                    "max_fail_percentage": w.max_fail_percentage,
                    "batch": None
                    if w.batch is None
                    else {"size": w.batch.size, "percent": w.batch.percent},
                    "on_gate_failure": w.on_gate_failure.value,
                    "skipped_counts_as_failed": w.skipped_counts_as_failed,
                    "deadline": w.deadline,
                }
                for w in inventory.waves
            ],
            "reach": {name: _reach_digest(t) for name, t in inventory.targets.items()},
        },
        sort_keys=True,
    )


def content_of(
    campaign: str,
    inventory: ResolvedInventory,
    inventory_sha: str,
    playbook_path: str,
    playbook_sha: str,
    playbook: Playbook | None,
) -> Content:
    return Content(
        campaign=campaign,
        inventory_sha=inventory_sha,
        playbook=playbook_path,
        playbook_sha=playbook_sha,
        playbook_json="" if playbook is None else playbook.model_dump_json(),
        inventory_json=inventory_json(inventory),
    )


# ---------------------------------------------------------------- the diff


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; lists stay whole (compared as sets of items)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def playbook_diff(old_json: str, new_json: str) -> list[str]:
    """``setting: old -> new`` per changed field; list fields as ``+ item`` / ``- item``."""
    if not old_json:
        return ["playbook: changed (the journal of this rollout has no copy of its settings)"]
    old, new = _flat(json.loads(old_json)), _flat(json.loads(new_json))
    lines: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            added = [str(x) for x in b if x not in a]
            removed = [str(x) for x in a if x not in b]
            parts = [f"+ {x}" for x in added] + [f"- {x}" for x in removed]
            if not parts:  # the same items in another order
                parts = ["same items, new order"]
            lines.append(f"playbook {key}: {_listing(parts)}")
        else:
            lines.append(f"playbook {key}: {_show(a)} -> {_show(b)}")
    return lines


def inventory_diff(old_json: str, new_json: str) -> list[str]:
    if not old_json:
        return ["inventory: changed (the journal of this rollout has no copy of its waves)"]
    old, new = json.loads(old_json), json.loads(new_json)
    lines: list[str] = []
    if old["domains"] != new["domains"]:
        lines.append(f"inventory domains: {_show(old['domains'])} -> {_show(new['domains'])}")
    old_waves = {w["name"]: w for w in old["waves"]}
    new_waves = {w["name"]: w for w in new["waves"]}
    added = [n for n in new_waves if n not in old_waves]
    removed = [n for n in old_waves if n not in new_waves]
    if added:
        lines.append(f"waves added: {_listing(added)}")
    if removed:
        lines.append(f"waves removed: {_listing(removed)}")
    for name, wave in new_waves.items():
        before = old_waves.get(name)
        if before is None:
            continue
        for key in sorted(k for k in wave if k != "hosts"):
            if wave[key] != before.get(key):
                lines.append(f"wave {name} {key}: {_show(before.get(key))} -> {_show(wave[key])}")
    old_wave_of = {h: w["name"] for w in old["waves"] for h in w["hosts"]}
    new_wave_of = {h: w["name"] for w in new["waves"] for h in w["hosts"]}
    gone = [f"{h} ({w})" for h, w in old_wave_of.items() if h not in new_wave_of]
    came = [f"{h} ({w})" for h, w in new_wave_of.items() if h not in old_wave_of]
    moved = [
        f"{h} ({w} -> {new_wave_of[h]})"
        for h, w in old_wave_of.items()
        if h in new_wave_of and new_wave_of[h] != w
    ]
    reached = [
        h for h, digest in new["reach"].items() if h in old["reach"] and old["reach"][h] != digest
    ]
    if gone:
        lines.append(f"hosts removed ({len(gone)}): {_listing(gone)}")
    if came:
        lines.append(f"hosts added ({len(came)}): {_listing(came)}")
    if moved:
        lines.append(f"hosts moved to another wave ({len(moved)}): {_listing(moved)}")
    if reached:
        lines.append(
            f"hosts reached differently (address, connection or credentials) ({len(reached)}): "
            f"{_listing(reached)}"
        )
    return lines


def describe_changes(old: ContentRow, new: Content) -> list[str]:
    """What differs between a rollout's current content and the files now, one short line per
    setting, wave or group of hosts. Empty: only the files' text changed (comments, layout)."""
    lines: list[str] = []
    if old.playbook != new.playbook:
        lines.append(f"playbook file: {old.playbook} -> {new.playbook}")
    if old.playbook_sha != new.playbook_sha or not old.playbook_json:
        lines += playbook_diff(old.playbook_json, new.playbook_json)
    if old.inventory_sha != new.inventory_sha or not old.inventory_json:
        lines += inventory_diff(old.inventory_json, new.inventory_json)
    return lines


# ---------------------------------------------------------------- the playbooks of a rollout


@dataclass(frozen=True, slots=True)
class PlaybookBook:
    """The playbook(s) each host of a rollout was applied with, from the journal."""

    by_revision: Mapping[int, Playbook | None]  # None: not kept (an older raorch's rollout)
    host_revisions: Mapping[str, Sequence[int]]

    @classmethod
    def of(cls, journal: JournalReader, rollout_id: str) -> PlaybookBook:
        return cls(
            {
                r.revision: Playbook.model_validate_json(r.playbook_json)
                if r.playbook_json
                else None
                for r in journal.contents(rollout_id)
            },
            journal.host_revisions(rollout_id),
        )

    def complete(self, hosts: Sequence[str]) -> bool:
        """Whether the journal knows the playbook of every one of these hosts."""
        return all(self.playbooks(h) for h in hosts)

    def playbooks(self, host: str) -> tuple[Playbook, ...]:
        """Newest first, without repeats; empty when the journal does not know them. A host
        with no record of its own was applied with the rollout's first content (a rollout
        begun before revisions were recorded per host)."""
        revisions = list(self.host_revisions.get(host, ()))
        if not revisions and self.by_revision:
            revisions = [min(self.by_revision)]
        out: list[Playbook] = []
        for revision in sorted(set(revisions), reverse=True):
            playbook = self.by_revision.get(revision)
            if playbook is None:
                return ()
            if playbook not in out:
                out.append(playbook)
        return tuple(out)
