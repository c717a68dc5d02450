"""A Group Policy refresh on an emulated host (``gpupdate /force``): the registry client-side
extension writes the settings of the GPOs that apply over whatever the registry holds
(docs/windows.md, sections 11 and 15; docs/lab.md, "Group Policy").

For each value, the setting that won (precedence 1) is applied: its data written, or the value
deleted when the GPO deletes it. A key whose values a list policy owns (``Rsop.replace_keys``:
Registry.pol's ``**delvals.``) first loses every value the GPO does not set. Then Windows starts
RemoteAssistanceTask (Group Policy applied settings: event 1502), which the lab models with
``offerraupdate``.

This module imports nothing from raorch outside ``raorch.lab``.
"""

from __future__ import annotations

from raorch.lab.host import Host
from raorch.lab.remoteassistance import Resolver, offerraupdate

_COMMAND_PREFIX = "**"


def gpupdate(host: Host, resolve: Resolver) -> list[str]:
    """Apply the winning settings of the host's GPOs; returns the values it changed
    (``HKLM\\key\\name``). A host whose RSoP holds nothing has no GPO to apply."""
    rsop = host.rsop
    if rsop is None:
        return []
    reg = host.registry
    winners = [s for s in rsop.winners() if s.name and not s.name.startswith(_COMMAND_PREFIX)]
    changed: list[str] = []
    for key in rsop.replace_keys:
        path = f"HKLM\\{key}"
        kept = {s.name.upper() for s in winners if s.key.upper() == key.upper() and not s.deleted}
        existing = reg.get_key(path)
        for value in list(existing.values.values()) if existing is not None else []:
            if value.name.upper() not in kept:
                reg.delete_value(path, value.name)
                changed.append(f"{path}\\{value.name}")
    for setting in winners:
        path = f"HKLM\\{setting.key}"
        held = reg.get_key(path)
        now = held.values.get(setting.name.upper()) if held is not None else None
        if setting.deleted:
            if now is not None:
                reg.delete_value(path, setting.name)
                changed.append(f"{path}\\{setting.name}")
        elif now is None or (now.kind, now.data) != (setting.kind, setting.data):
            reg.set_value(path, setting.name, setting.kind, setting.data)
            changed.append(f"{path}\\{setting.name}")
    if not host.facts.os_version.startswith("5."):
        # Group Policy applied settings: Windows runs RemoteAssistanceTask (section 11).
        offerraupdate(host, resolve)
    return changed
