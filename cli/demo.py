"""`zhibao demo`: a whole city on loopback, to see it work."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

import click

from cli.common import global_home, print_json


@click.command("demo")
@click.option(
    "--home",
    "--dir",
    "where",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=global_home,
    help="Where to build the demo city and keep it (default: `zhibao --home DIR`, else a "
    "temporary directory, removed after). Not read from $ZHIBAO_HOME.",
)
@click.option(
    "--catalogue",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Catalogue CSV (default: the bundled sample).",
)
@click.option("--seed", default=7, type=int, show_default=True, help="Seed for the flaky link.")
@click.option("--json", "as_json", is_flag=True, help="Print the city's counts as JSON.")
def demo_command(where: Path | None, catalogue: Path | None, seed: int, as_json: bool) -> None:
    """Build a city, two towns and three villages on loopback and run a realistic story."""
    from tiers import demo

    data = (
        catalogue.read_bytes()
        if catalogue
        else resources.files("tiers").joinpath("data/catalogue.csv").read_bytes()
    )
    if where is not None:
        summary = demo.run(where, data, click.echo, seed=seed)
    else:
        with tempfile.TemporaryDirectory(prefix="zhibao-demo-") as tmp:
            summary = demo.run(Path(tmp) / "city", data, click.echo, seed=seed)
    if as_json:
        print_json(summary)
    if summary["problems"]:
        raise SystemExit(1)
