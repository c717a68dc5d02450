"""What `raorch rollout --broker` and `raorch rollback --broker` share: the hosts' work on the
workers of their sites (engine/broker.py), the limits per site, and the refusals made before
anything is published."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from raorch.engine.broker import DEFAULT_NO_WORKER_AFTER, CeleryDispatcher, SiteStatus
from raorch.engine.runner import SiteLimits, fanout
from raorch.models.errors import InputError, Location, Problem, RefusedError
from raorch.models.events import RunKind, SiteChecked, Subscriber
from raorch.models.inventory import SITE_NAME, SecretKind, Target

SHOWN = 5  # names listed in a refusal; the rest are counted


def site_limits(values: Sequence[str]) -> SiteLimits:
    """``--site-concurrency N`` (every site) and ``SITE=N`` (one site), repeatable."""
    each: int | None = None
    sites: dict[str, int] = {}
    for value in values:
        site, _, number = value.rpartition("=")
        try:
            limit = int(number)
        except ValueError:
            limit = 0
        if limit < 1 or (site and not SITE_NAME.match(site)):
            raise InputError(
                [
                    Problem(
                        Location("--site-concurrency"),
                        f"{value!r} is not N or SITE=N (N >= 1)",
                        "e.g. --site-concurrency 8 --site-concurrency paris=2",
                    )
                ]
            )
        if site:
            sites[site] = limit
        else:
            each = limit
    return SiteLimits(each, sites)


def refuse_prompted(targets: Iterable[Target]) -> None:
    """A worker has no terminal to ask at, and a password asked here never travels to it."""
    prompted = sorted({t.name for t in targets if _prompted(t)})
    if prompted:
        shown = ", ".join(prompted[:SHOWN]) + (
            f" and {len(prompted) - SHOWN} more" if len(prompted) > SHOWN else ""
        )
        raise RefusedError(
            f"{len(prompted)} host(s) have a prompt password ({shown}), which cannot be used "
            "with workers: a worker has no terminal to ask at, and raorch never sends a "
            "password through the broker; nothing was published",
            "give those accounts env:, file: or keyring: references that resolve on the "
            "workers' machines, or run without --broker",
        )


def _prompted(target: Target) -> bool:
    creds = target.credentials
    return (
        creds is not None
        and creds.password is not None
        and creds.password.kind is SecretKind.PROMPT
    )


def broker_dispatcher(
    url: str, targets: Iterable[Target], no_worker_after: float | None
) -> CeleryDispatcher:
    """The dispatcher to the workers of the targets' sites; connects now (a ``BrokerError``
    before anything is recorded)."""
    return CeleryDispatcher(
        url,
        sites=sorted({t.site for t in targets}),
        no_worker_after=DEFAULT_NO_WORKER_AFTER if no_worker_after is None else no_worker_after,
    )


def report_sites(
    dispatcher: CeleryDispatcher,
    rollout_id: str,
    kind: RunKind,
    subscribers: list[Subscriber],
) -> None:
    """The sites' figures as events (``SiteChecked``): the journal keeps the last one of each
    site (``raorch status``), the live view shows them."""
    emit = fanout(subscribers)

    def on_site(status: SiteStatus) -> None:
        emit(
            SiteChecked(
                rollout_id,
                status.site,
                status.workers,
                status.queued,
                status.no_worker_since,
                time.time(),
                kind,
            )
        )

    dispatcher.on_site = on_site
