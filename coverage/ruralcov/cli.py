"""The ``ruralcov`` command: a thin layer over :func:`ruralcov.analyse` and the run folder.

Library errors become one line on stderr and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ruralcov import __version__
from ruralcov.config import config_from_dict, load_config, replace
from ruralcov.errors import RuralcovError
from ruralcov.pipeline import STEPS, CoverageResult, analyse

log = logging.getLogger("ruralcov")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a :class:`RuralcovError` into one clean line and exit status 2."""
    try:
        yield
    except RuralcovError as exc:
        message = " ".join(str(exc).split())
        click.echo(f"ruralcov: error: {message}", err=True)
        sys.exit(2)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar over the analysis steps (hidden with -q or when stderr is not a tty)."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(STEPS),
        disable=quiet or None,
        unit="step",
        file=sys.stderr,
        bar_format="{desc:<14} {bar} {n_fmt}/{total_fmt} [{elapsed}]",
    )
    done = {"n": 0}

    def tell(step: str) -> None:
        if done["n"]:
            bar.update(1)
        done["n"] += 1
        bar.set_description_str(step)
        log.info("step: %s", step)

    try:
        yield tell
        bar.update(len(STEPS) - bar.n)
    finally:
        bar.close()


def _summary_line(result: CoverageResult) -> str:
    h = result.headline
    share = "n/a" if h["fibre_share"] is None else f"{h['fibre_share']:.2%}"
    return (
        f"{h['villages']} administrative villages; fibre {h['fibre_villages']} ({share}, "
        f"target {h['fibre_target']:.0%}, gap {h['fibre_gap_villages']}); speed meets "
        f"{h['speed_meets']}, below {h['speed_below']}, insufficient data "
        f"{h['speed_insufficient']}; {len(result.issues)} issues"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ruralcov")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Fibre and broadband-speed coverage of administrative villages against policy targets.

    \b
    Example:
      ruralcov demo                 # the embedded Shanxi demo into out/demo
      ruralcov run shanxi.toml      # your own data
    """
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = {"quiet": quiet}


def _run(
    ctx: click.Context,
    config: Any,
    out: Path,
    *,
    maps: bool | None,
    extra_inputs: Path | None = None,
) -> CoverageResult:
    from ruralcov.report import write_run

    with _progress(ctx.obj["quiet"]) as tell:
        result = analyse(config, progress=tell)
    write_run(result, out, maps=maps, extra_inputs=extra_inputs)
    if not ctx.obj["quiet"]:
        click.echo(_summary_line(result))
        click.echo(f"run folder: {out}  (open {out / 'report.html'})")
    return result


@cli.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: [run] out).")
@click.option("--no-maps", is_flag=True, help="Skip map rendering (large batch runs).")
@click.pass_context
def run(ctx: click.Context, config_path: Path, out: Path | None, no_maps: bool) -> None:
    """Analyse the inputs of CONFIG.toml and write a run folder.

    \b
    Example:
      ruralcov run shanxi.toml --out out/2026q3
    """
    with _user_errors():
        config = load_config(config_path)
        target = out or config.run.out or Path("out") / config.run.name
        _run(ctx, config, target, maps=False if no_maps else None)


@cli.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(path_type=Path))
@click.pass_context
def validate(ctx: click.Context, config_path: Path) -> None:
    """Check CONFIG.toml and its inputs without writing anything.

    Reads every input, reports the rows that would be dropped or flagged, and exits 2 on
    anything that would stop a run.

    \b
    Example:
      ruralcov validate shanxi.toml
    """
    with _user_errors():
        config = load_config(config_path)
        with _progress(ctx.obj["quiet"]) as tell:
            result = analyse(config, progress=tell)
    for rec in result.inputs:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(rec.dropped.items())) or "none"
        click.echo(
            f"{rec.layer}: {rec.rows_read} rows read, {rec.rows_used} used, dropped: {dropped}"
        )
    counts = result.issues.groupby(["severity", "layer", "reason"]).size()
    for (severity, layer, reason), n in counts.items():
        click.echo(f"{severity:<8} {layer:<12} {reason:<28} {n}")
    click.echo(_summary_line(result))


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Run folder.",
)
@click.option("--seed", type=int, default=2020, show_default=True, help="Generator seed.")
@click.option("--no-maps", is_flag=True, help="Skip map rendering.")
@click.pass_context
def demo(ctx: click.Context, out: Path, seed: int, no_maps: bool) -> None:
    """Run the embedded Shanxi demo: real register and outlines, synthetic geometry and data.

    The generated inputs are kept in OUT/inputs/ and the resolved configuration in
    OUT/config.toml, so `ruralcov run OUT/config.toml` recomputes the same numbers.

    \b
    Example:
      ruralcov demo --out out/demo
    """
    from ruralcov.demo import build_demo_inputs

    with _user_errors():
        inputs = out / "inputs"
        if out.exists():
            shutil.rmtree(out)
        inputs.mkdir(parents=True)
        raw = build_demo_inputs(inputs, seed=seed)
        config = config_from_dict(raw, base=inputs)
        config = replace(config, base=inputs)
        _run(ctx, config, out, maps=False if no_maps else None, extra_inputs=inputs)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ruralcov")


if __name__ == "__main__":  # pragma: no cover
    main()
