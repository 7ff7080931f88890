"""Writing a :class:`~ruralcov.pipeline.CoverageResult` as a run folder.

A run folder holds ``villages.parquet`` (GeoParquet), ``assets.parquet`` (the fibre access
points and routes the run read, counted or not), ``cells.parquet`` (the speed tests per 1 km
cell, when the run computed them), ``tables/*.csv``, ``report.xlsx``, ``report.html``,
``maps/`` (:mod:`ruralcov.maps`), ``charts/`` (runs with periods), ``manifest.json`` and
``config.toml``: everything a later step (``ruralcov map``, ``plan``, ``audit``, ``diff``,
``verify``) needs, so that a copied run folder works without the inputs it was computed from
(:mod:`ruralcov.runfolder` reads it back).

A run folder is written whole or not at all: everything goes into a temporary sibling folder
that replaces ``<out>`` only once it is complete, under a lock, so a failed or killed run never
leaves a partial folder behind (:mod:`ruralcov.outdir`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

from ruralcov import outdir
from ruralcov.config import dump_config, relative_inside
from ruralcov.errors import ConfigError, OutputExistsError
from ruralcov.io import sha256_file
from ruralcov.memory import release
from ruralcov.pipeline import CoverageResult
from ruralcov.report.gpkg import GPKG_FILE, gpkg_layers, write_gpkg
from ruralcov.report.html import Figures, page, render_report_html
from ruralcov.report.manifest import build_manifest, write_manifest
from ruralcov.report.tables import write_tables
from ruralcov.report.xlsx import write_xlsx

__all__ = [
    "ASSETS_FILE",
    "CELLS_FILE",
    "OWN_ENTRIES",
    "WRITE_STEPS",
    "assets_frame",
    "write_contents",
    "write_run",
    "write_skipped_index",
]

#: The steps ``write_run`` reports to its ``progress`` callback, in order.
WRITE_STEPS: tuple[str, ...] = ("tables", "maps", "report")
#: From this many register units on, the layers of results.gpkg are made only once
#: report.xlsx is written and its memory freed, rather than beside the tables and the
#: workbook: at national scale (620,573 units) each holds about half a gigabyte to a
#: gigabyte, and stacked they raised the peak RSS of a run by 1.5 GB
#: (``bench/national.py``). Every file is the same either way.
SEQUENTIAL_FROM = 100_000
#: Free bytes (a floor, and more per register unit) with which results.gpkg is written beside
#: the workbook rather than after it: about ten times what a province's GeoPackage takes.
GPKG_ROOM = 256 * 2**20
GPKG_ROOM_PER_UNIT = 32 * 2**10
#: The fibre assets of a run: points and routes in one GeoParquet, told apart by ``role``.
ASSETS_FILE = "assets.parquet"
#: The speed tests of a run per 1 km cell (``CoverageResult.cells``).
CELLS_FILE = "cells.parquet"

#: Top-level entries of a run folder that ``write_run`` writes (and so never keeps).
OWN_ENTRIES = frozenset(
    {
        "villages.parquet",
        ASSETS_FILE,
        GPKG_FILE,
        CELLS_FILE,
        "tables",
        "report.xlsx",
        "maps",
        "charts",
        "report.html",
        "manifest.json",
        "config.toml",
    }
)


def _inside(path: Path, root: Path) -> bool:
    return relative_inside(path, root) is not None


def _entries_to_keep(result: CoverageResult, out: Path, extra: Path | None) -> list[Path]:
    """Entries of an existing ``out`` that the new run must carry over.

    That is ``extra`` when it lies inside ``out``, and the top-level folder holding any input
    this result was computed from (``ruralcov run out/demo/config.toml`` reads
    ``out/demo/inputs``; replacing the folder must not delete them).
    """
    if not out.is_dir():
        return []
    keep: list[Path] = []
    if extra is not None and _inside(extra, out):
        keep.append(out / relative_inside(extra, out).split("/")[0])  # type: ignore[union-attr]
    for rec in result.inputs:
        inside = relative_inside(Path(rec.path), out)
        if inside is None or inside == ".":
            continue
        top = out / inside.split("/")[0]
        if top.name in OWN_ENTRIES:
            raise ConfigError(
                f"input {str(rec.path)!r} lies inside the run folder's own {top.name!r}, "
                "which this run overwrites; move the input out of the run folder"
            )
        if os.path.lexists(top) and top not in keep:
            keep.append(top)
    return keep


def _is_run_folder_or_empty(out: Path, keep: list[Path], *, run_counts: bool = True) -> bool:
    """True when ``out`` is empty apart from ``keep`` (or, with ``run_counts``, is a run)."""
    if run_counts and (out / "manifest.json").is_file():
        return True
    return all(p in keep for p in out.iterdir())


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (instant, no space), or copy it where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(entry: Path, target: Path) -> None:
    """Put ``entry`` of the old run into the new one, leaving the old run whole."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
    elif entry.is_symlink():
        os.symlink(os.readlink(entry), target)
    else:
        _link_or_copy(str(entry), str(target))


def _trend_charts(result: CoverageResult, tmp: Path) -> list[tuple[str, str]]:
    """One PNG per county under ``charts/`` (runs with periods only): (src, caption)."""
    trend = (getattr(result, "trends", None) or {}).get("county")
    if trend is None:
        return []
    from ruralcov.trends import write_trend_charts

    made = write_trend_charts(trend, tmp / "charts", fibre_target=result.config.targets.fibre_share)
    return [(f"charts/{name}", caption) for name, caption in made]


def write_skipped_index(folder: Path | str) -> Path:
    """Write the ``maps/index.html`` of a run whose maps were switched off.

    Parameters
    ----------
    folder
        The maps folder (``<out>/maps``); made when missing.

    Returns
    -------
    pathlib.Path
        The page written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    body = (
        "<h1>Maps were skipped</h1>\n<p>This run was made without maps "
        "(<code>[maps] enabled = false</code> or <code>ruralcov run --no-maps</code>). "
        "Draw them later with <code>ruralcov map RUN_DIR</code>; the numbers are in the "
        '<a href="../report.html">report</a>.</p>'
    )
    path.write_text(page("Maps skipped", body), encoding="utf-8", newline="\n")
    return path


def assets_frame(result: CoverageResult) -> gpd.GeoDataFrame:
    """The fibre access points and routes of ``result`` as one frame, as ``assets.parquet``
    holds them: the columns of ``fibre_points`` / ``fibre_routes`` and ``role`` (``points``
    or ``routes``), points first.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.

    Returns
    -------
    geopandas.GeoDataFrame
        Every asset the run read, operational or not (EPSG:4326); ``operational`` is
        boolean.
    """
    parts = [result.fibre_points.assign(role="points"), result.fibre_routes.assign(role="routes")]
    frame = pd.concat(parts, ignore_index=True)
    # a boolean column, whatever dtype the concatenation of the sources left it in
    frame["operational"] = frame["operational"].astype("boolean").fillna(False).astype(bool)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")


def _write_data(result: CoverageResult, tmp: Path, created: str, *,
                sequential: bool | None = None) -> list[tuple[str, str]]:
    """The Parquet files, the tables, the workbook and results.gpkg; returns the files for
    the report's list beyond the fixed ones. ``sequential`` (None: from
    :data:`SEQUENTIAL_FROM` register units on) makes results.gpkg only once the workbook is
    written."""
    if sequential is None:
        sequential = len(result.villages) >= SEQUENTIAL_FROM
    # Threads do what works without the GIL while the tables and the workbook are formatted
    # (Python work): villages.parquet (pyarrow; from a frame of its own) and, for all but
    # the largest runs, results.gpkg's layers (their areas are unions of villages: GEOS). With
    # room to spare on the disk, that thread writes the GeoPackage too (GDAL); else it is
    # written after the workbook: on a full disk the first file refused then stops the run
    # before GDAL starts (which would print its own errors).
    gpkg_path = tmp / GPKG_FILE
    beside = not sequential and outdir.ample_room(tmp, GPKG_ROOM_PER_UNIT * len(result.villages)
                                                  + GPKG_ROOM)
    with ThreadPoolExecutor(max_workers=2) as pool:
        gpkg = pool.submit(write_gpkg, result, gpkg_path, created=created) if beside else None
        layers = pool.submit(gpkg_layers, result) if not (sequential or beside) else None
        parquet = pool.submit(result.villages.copy(deep=False).to_parquet,
                              tmp / "villages.parquet", index=False)
        assets_frame(result).to_parquet(tmp / ASSETS_FILE, index=False)
        files = [(ASSETS_FILE, "fibre access points and routes the run read, counted or not "
                  "(GeoParquet)")]
        if result.cells is not None:
            result.cells.to_parquet(tmp / CELLS_FILE, index=False)
            files.append((CELLS_FILE, "speed tests per 1 km cell, as the county maps draw them"))
        write_tables(result, tmp / "tables")
        write_xlsx(result, tmp / "report.xlsx", created=created)
        parquet.result()
    if gpkg is not None:
        files.append(gpkg.result())
        return files
    if sequential:  # what the workbook and the tables held goes back before the layers
        release()
    files.append(write_gpkg(result, gpkg_path, created=created,
                            layers=None if layers is None else layers.result()))
    return files


def write_contents(result: CoverageResult, folder: Path | str, *, out: Path | str, maps: bool,
                   created: str, figures: Figures | None = None,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Write every file of the run folder ``out`` into ``folder`` (which will become ``out``).

    Every file but the maps is a function of ``result``, ``out`` and ``created``, which is
    how ``ruralcov verify`` recomputes a run. Entries already in ``folder`` (the inputs the
    run carries) are not outputs of the run and are left out of the manifest's ``outputs``.
    ``manifest.json`` is written last, so that a folder holding it is complete.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    folder
        The folder to write into.
    out
        The run folder it will become (input paths inside it are written relative).
    maps
        Draw the maps; otherwise ``maps/index.html`` says they were skipped.
    created
        The run's time (ISO 8601), the only time the files hold.
    figures
        The static maps the report shows when ``maps`` is false and they exist already.
    progress
        Called with each name of :data:`WRITE_STEPS` as that step starts.

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    tmp, out = Path(folder), Path(out)
    tell = progress or (lambda step: None)
    carried = {p.name for p in tmp.iterdir()}
    tell("tables")
    files = _write_data(result, tmp, created)
    figures = list(figures or [])
    tell("maps")
    if maps:  # folium is imported only when maps are drawn
        from ruralcov import maps as _maps

        _maps.write_maps(result, tmp / "maps")
        figures = _maps.report_figures(tmp / "maps")
    else:
        write_skipped_index(tmp / "maps")
    tell("report")
    (tmp / "report.html").write_text(
        render_report_html(result, created=created, figures=figures,
                           trend_figures=_trend_charts(result, tmp), files=files),
        encoding="utf-8",
        newline="\n",
    )
    dump_config(result.config, tmp / "config.toml", run_folder=out)
    outputs = {
        p.relative_to(tmp).as_posix(): sha256_file(p)
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.relative_to(tmp).parts[0] not in carried
    }
    write_manifest(tmp, build_manifest(result, out, outputs, created=created, staging=tmp))
    return tmp


def _refuse(out: Path, keep: list[Path], force: bool) -> None:
    """Stop before writing when ``out`` is neither a run folder nor empty, or holds a run
    that ``force`` does not allow to replace."""
    if not out.exists():
        return
    if not _is_run_folder_or_empty(out, keep):
        raise ConfigError(
            f"{str(out)!r} exists and is not a ruralcov run folder (no manifest.json); "
            "ruralcov will not delete it. Choose another --out folder or empty this one."
        )
    if not force and not _is_run_folder_or_empty(out, keep, run_counts=False):
        raise OutputExistsError(
            f"run folder {str(out)!r} already holds a run; use --force (force=True) to "
            "replace it, or choose another --out folder"
        )


def write_run(
    result: CoverageResult,
    out: Path | str,
    *,
    maps: bool | None = None,
    extra_inputs: Path | None = None,
    force: bool = False,
    stage: outdir.Staging | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``result`` as the run folder ``out`` and return its path.

    The run folder is locked while it is written (``<out>.lock``; another command writing it
    stops with :class:`~ruralcov.errors.FolderInUseError`), built in a temporary sibling
    ``<out>.tmp-<random>`` and swapped in whole; a failure or a kill at any instant leaves the
    previous run whole, and the next command removes what was left (:mod:`ruralcov.outdir`).
    A file-system error (disk full, read-only, ...) is an :class:`~ruralcov.errors.OutputError`
    naming the file.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` returned.
    out
        The run folder. An existing run folder (one with a ``manifest.json``) is replaced only
        with ``force=True``, and then only once the new one is complete; a non-empty folder
        that is not a run folder is refused even with ``force`` rather than deleted.
    maps
        Draw the maps; ``None`` follows ``result.config.maps.enabled``. When false,
        ``maps/index.html`` only says that maps were skipped.
    extra_inputs
        A folder of inputs written for this run. Inside ``stage`` (the demo writes its inputs
        there) it stays where it is; inside an existing ``out`` it is carried into the new
        folder at the same place (hard-linked or copied: the old run stays whole until the
        swap); elsewhere it is copied to ``<out>/inputs``. It is not listed under ``outputs``
        in the manifest. Inputs the result was computed from that lie inside an existing
        ``out`` (``ruralcov run out/demo/config.toml``) are carried over the same way, even
        without this argument.
    force
        Replace an existing run folder. Without it, a published run is never overwritten by
        accident (``OutputExistsError``); a folder holding only this run's inputs counts as empty.
    stage
        The temporary folder to build in, already made for ``out`` by
        :func:`ruralcov.outdir.staging` (the CLI makes it before the analysis, to find a
        read-only or full disk early); by default one is made here.
    progress
        Called with each name of :data:`WRITE_STEPS` as that step starts.

    Returns
    -------
    pathlib.Path
        The run folder, absolute.

    Examples
    --------
    >>> write_run(analyse(load_config("run.toml")), "out/run")  # doctest: +SKIP
    PosixPath('/…/out/run')
    """
    if maps is None:
        maps = result.config.maps.enabled
    extra = outdir.absolute(extra_inputs) if extra_inputs is not None else None
    with outdir.locked(out, command="ruralcov.write_run") as out:
        if extra is not None and not extra.is_dir():
            raise ConfigError(f"extra inputs folder {str(extra)!r} does not exist")
        outdir.preflight(out)  # (not a file)
        keep = _entries_to_keep(result, out, extra)
        _refuse(out, keep, force)
        if stage is not None and stage.out != out:
            raise ValueError(f"stage {stage.tmp} is not for {out}")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with outdir.staging(out) if stage is None else nullcontext(stage) as stage:
            for entry in keep:
                target = stage.tmp / entry.relative_to(out)
                if not os.path.lexists(target):
                    _carry_over(entry, target)
            if extra is not None and not _inside(extra, out) and not _inside(extra, stage.tmp):
                shutil.copytree(extra, stage.tmp / "inputs")
            write_contents(result, stage.tmp, out=out, maps=bool(maps), created=created,
                           progress=progress)
            stage.commit()
    return out
