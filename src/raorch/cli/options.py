"""The command-line options several commands share, spelled the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import click

from raorch.engine.runner import DEFAULT_CONCURRENCY

inventory = click.option(
    "--inventory",
    "-i",
    "inventory_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Inventory YAML file (targets, connection settings, waves).",
)
playbook = click.option(
    "--playbook",
    "-p",
    "playbook_opt",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Playbook YAML file. Default: the inventory's `playbook:`.",
)
limit = click.option(
    "--limit",
    default=None,
    help="Only hosts matching these patterns (comma-separated fnmatch, case-insensitive).",
)
concurrency = click.option(
    "--concurrency",
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Hosts in flight at once.",
)
deadline = click.option(
    "--deadline",
    default=None,
    type=click.FloatRange(min=1),
    help="Seconds a host may take before it is failed (default 300).",
)
no_dashboard = click.option(
    "--no-dashboard", is_flag=True, help="Plain lines instead of the live view."
)
as_json = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
)


# ---------------------------------------------------------------- workers (issue 20)

broker = click.option(
    "--broker",
    default=None,
    envvar="RAORCH_BROKER",
    help="Run the hosts on workers per site (raorch worker) through this RabbitMQ broker, "
    "amqp://USER:PASSWORD@HOST:PORT/VHOST (or RAORCH_BROKER). Default: in this process.",
)
site_concurrency = click.option(
    "--site-concurrency",
    "site_concurrency",
    multiple=True,
    metavar="[SITE=]N",
    help="Hosts in flight per site, within --concurrency: N for every site, SITE=N for one "
    "(repeatable).",
)
no_worker_after = click.option(
    "--no-worker-after",
    default=None,
    type=click.FloatRange(min=0),
    help="With --broker: seconds a site may have no worker before the dashboard and status "
    "show it so (default 30); its hosts wait for one until their deadline.",
)


journal = click.option(
    "--journal",
    "journal_url",
    default=None,
    metavar="URL",
    help="The journal: postgresql://USER@HOST[:PORT]/DATABASE (shared by several controllers) "
    "or sqlite:///PATH. Default: $RAORCH_JOURNAL, else $RAORCH_HOME/state.db.",
)
