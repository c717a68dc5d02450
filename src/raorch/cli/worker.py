"""`raorch worker`: run the hosts of one site for controllers elsewhere (Celery on RabbitMQ).

A worker consumes its site's queue (``raorch.site.NAME``) on the broker and runs each host's
work as ``raorch rollout`` would in its own process: the playbook from the journal it shares
with the controller, the passwords from its own environment, files or keyring (never from
the broker), the snapshot committed into that journal before the first write. Several workers
may serve a site, on one machine or many; a host is run by one at a time.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

import click

from raorch.cli import options
from raorch.cli.errors import handle_errors
from raorch.cli.journal import worker_journal
from raorch.engine.broker import (
    celery_app,
    check_url,
    connect,
    safe_url,
    site_queue,
    site_queue_name,
)
from raorch.engine.workers import WorkerSide
from raorch.models.errors import InputError, Location, Problem
from raorch.models.inventory import SITE_NAME
from raorch.models.secrets import SecretResolver

DEFAULT_WORKER_CONCURRENCY = 8

_print_lock = threading.Lock()


def _say(line: str) -> None:
    with _print_lock:
        click.echo(line)
        sys.stdout.flush()


@click.command("worker")
@click.option("--site", required=True, help="The site whose hosts this worker runs.")
@click.option(
    "--broker",
    required=True,
    envvar="RAORCH_BROKER",
    help="RabbitMQ, amqp://USER:PASSWORD@HOST:PORT/VHOST (or RAORCH_BROKER).",
)
@options.journal
@click.option(
    "--concurrency",
    default=DEFAULT_WORKER_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Hosts this worker runs at once.",
)
@handle_errors
def worker(site: str, broker: str, journal_url: str | None, concurrency: int) -> None:
    """Run the hosts of one site for `raorch rollout --broker` / `raorch rollback --broker`.

    The journal must be the controllers' (--journal / RAORCH_JOURNAL: PostgreSQL for workers
    on other machines; the SQLite file only on the controller's machine). Passwords are read
    here (env:, file:, keyring: as the inventory says); a `prompt` credential cannot be used
    with workers. Stop with Ctrl-C: the hosts in flight finish.
    """
    if not SITE_NAME.match(site):
        raise InputError(
            [
                Problem(
                    Location("--site"),
                    f"{site!r} is not a site name",
                    "letters, digits, '.', '_' and '-', as the inventory's site:",
                )
            ]
        )
    check_url(broker)
    journal = worker_journal(journal_url)
    side = WorkerSide(journal, site, SecretResolver(), log=_say)
    app = celery_app(broker, worker=side)
    connect(app, broker).release()  # a clear error now, not Celery's retries
    app.conf.task_queues = [site_queue(site)]
    name = site_queue_name(site)
    _say(
        f"raorch worker: site {site} (queue {name}), {concurrency} host(s) at a time; "
        f"broker {safe_url(broker)}; journal {journal.location}"
    )
    from celery.signals import worker_ready

    def ready(**_: object) -> None:
        _say(f"raorch worker: ready (site {site})")

    worker_ready.connect(ready, weak=False)
    process = app.Worker(
        hostname=f"raorch.{site}.{os.getpid()}@{socket.gethostname()}",
        pool_cls="threads",
        concurrency=concurrency,
        queues=[name],
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        quiet=True,
        loglevel="WARNING",
        optimization="fair",
    )
    try:
        process.start()
    finally:
        journal.close()
    raise click.exceptions.Exit(int(process.exitcode or 0))
