"""``report.html`` and the HTML page helpers every page of a run folder shares.

A page is self-contained (inline CSS from ``templates/report.css``, no external reference) and
every value in it is escaped. :func:`page` and :func:`html_table` are also what the maps' index
page (:mod:`ruralcov.maps`) and the plan's report section (:mod:`ruralcov.plan`) are made of.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruralcov.capability import FIVE_WAY_TEXT, is_five_way
from ruralcov.pipeline import CoverageResult
from ruralcov.report.tables import (
    FALSE,
    GAP_TABLES,
    TRUE,
    column_decimals,
    headline_figures,
    is_code,
)
from ruralcov.schema import LEVELS, SUMMARY_COLUMNS

__all__ = [
    "add_report_section",
    "county_file",
    "html_table",
    "page",
    "ranked_areas",
    "render_report_html",
]

#: ``(path relative to the run folder, caption)`` of a figure.
Figures = Sequence[tuple[str, str]]

#: Columns of the summary table in the report: the counts and the fibre share (the target is
#: in the headline, the speed shares in the CSV and the workbook).
_SUMMARY_SHOWN = [c for c in SUMMARY_COLUMNS
                  if c not in ("level", "fibre_target", "speed_share", "communities_speed_share")]

#: The columns of the short list of areas without any village outline.
_UNMAPPED_SHOWN = ["code", "name", "map", "villages", "fibre_villages", "fibre_gap_villages",
                   "communities"]

#: How an area without any village outline is marked: it is neither drawn nor ranked.
NOT_MAPPED = "no outline: not mapped"

#: What each gap list of ``GAP_TABLES`` holds.
_GAP_TEXT = {
    "no_fibre": "administrative villages without fibre",
    "below_speed": "villages and communities with enough evidence that do not meet their "
    "speed target",
    "insufficient_data": "villages and communities with too few speed tests or devices to "
    "class",
}

#: Five-way speed classes (ruralcov.capability) with the style of their card.
_FIVE_WAY_CSS = {"meets": "good", "fails": "bad"}


def county_file(code: str) -> str:
    """File name of a county's map page (in ``maps/``), which the report's county table
    links to.

    Parameters
    ----------
    code
        The county code.

    Returns
    -------
    str
        ``county_<code>.html``, the code with anything but letters, digits, ``-`` and ``_``
        replaced, so that a code can never make a path or a URL of its own.

    Examples
    --------
    >>> county_file("140105")
    'county_140105.html'
    >>> county_file("../x y")
    'county____x_y.html'
    """
    return "county_" + re.sub(r"[^0-9A-Za-z_-]", "_", str(code)) + ".html"


def _css() -> str:
    return (resources.files("ruralcov") / "templates" / "report.css").read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(value):,}"


def _fmt_pct(value: Any, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{decimals}f} %"


def _fmt_cell(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return TRUE if value else FALSE
    if isinstance(value, float | np.floating):
        if "share" in column or column.endswith("_target"):
            return _fmt_pct(value)
        decimals = column_decimals(column)
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
    if isinstance(value, int | np.integer) and not is_code(column):
        return f"{int(value):,}"
    return str(value)


def _td(column: str, value: Any, href: str | None = None) -> str:
    numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    cls = ' class="num"' if numeric and not is_code(column) else ""
    text = _e(_fmt_cell(column, value))
    if href is not None:
        text = f'<a href="{_e(href)}">{text}</a>'
    return f"<td{cls}>{text}</td>"


def _th(column: str) -> str:
    """A header cell that may wrap after each ``_`` (``villages_with_geometry`` on three
    lines keeps a wide table inside the page) and still reads as the CSV's column name."""
    return "<th>" + "_<wbr>".join(_e(part) for part in str(column).split("_")) + "</th>"


def html_table(
    frame: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    links: tuple[str, Sequence[str | None]] | None = None,
) -> str:
    """A frame as an escaped HTML table, numbers right-aligned and formatted as in the CSV.

    Parameters
    ----------
    frame
        Any table.
    columns
        The columns to show, in order (those missing from ``frame`` are left out); default
        all.
    links
        ``(column, href of each row)``: that column's cells link to the row's page (None:
        no link).

    Returns
    -------
    str
        A ``<div class="table-wrap"><table>`` element.

    Examples
    --------
    >>> print(html_table(pd.DataFrame({"code": [7], "fibre_share": [0.5]})))
    <div class="table-wrap"><table>
    <thead><tr><th>code</th><th>fibre_<wbr>share</th></tr></thead>
    <tbody>
    <tr><td>7</td><td class="num">50.00 %</td></tr>
    </tbody>
    </table></div>
    >>> print(html_table(pd.DataFrame({"name": ["a"]}), links=("name", ["a.html"])).splitlines()[3])
    <tr><td><a href="a.html">a</a></td></tr>
    """
    columns = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    link_col, hrefs = links if links is not None else (None, [None] * len(frame))
    head = "".join(_th(c) for c in columns)
    body = [
        "<tr>" + "".join(_td(col, value, href if col == link_col else None)
                         for col, value in zip(columns, row, strict=True)) + "</tr>"
        for row, href in zip(frame.loc[:, columns].itertuples(index=False, name=None), hrefs,
                             strict=True)
    ]
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + ("\n</tbody>\n</table></div>")
    )


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS, no external references).

    Parameters
    ----------
    title
        The page title (escaped here).
    body
        The page's HTML body, already escaped.

    Returns
    -------
    str
        The page, ending in a newline.
    """
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>\n{_css()}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _summary_level(result: CoverageResult) -> str | None:
    """County if present, else the finest level present below it, else the coarsest."""
    for level in ("county", "township", "city", "province"):
        if level in result.summaries:
            return level
    return next(iter(result.summaries), None)


def ranked_areas(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The areas of a summary as the report ranks them: largest fibre gap first.

    An area where no administrative village has a polygon (``villages_with_geometry = 0``,
    such as a development zone of the register) cannot be drawn or planned, so a gap there
    is no place to build next: it is set apart, never ranked among the worst.

    Parameters
    ----------
    summary
        A summary table (``summary_<level>``).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The areas with an outline, by gap (descending), then share and code; and the areas
        without one, in the same order.

    Examples
    --------
    >>> s = pd.DataFrame({"code": ["a", "b", "c"], "villages_with_geometry": [5, 0, 5],
    ...                   "fibre_share": [0.9, 0.0, 0.5], "fibre_gap_villages": [1, 9, 2]})
    >>> [list(part["code"]) for part in ranked_areas(s)]
    [['c', 'a'], ['b']]
    """
    keys = [c for c in ("fibre_gap_villages", "fibre_share", "code") if c in summary.columns]
    ascending = [k != "fibre_gap_villages" for k in keys]
    ordered = summary.sort_values(keys, ascending=ascending, kind="stable", na_position="last")
    if "villages_with_geometry" not in ordered.columns:
        return ordered, ordered.iloc[0:0]
    mapped = ordered["villages_with_geometry"].fillna(0).astype("int64") > 0
    return ordered[mapped], ordered[~mapped]


def _issue_counts(issues: pd.DataFrame) -> pd.DataFrame:
    if issues.empty:
        return pd.DataFrame(columns=["layer", "reason", "severity", "findings", "rows_dropped"])
    frame = issues.assign(
        dropped=issues["dropped"].fillna(False).astype(bool) if "dropped" in issues else False
    )
    grouped = frame.groupby(["layer", "reason", "severity"], dropna=False, sort=True)
    counts = grouped.agg(findings=("reason", "size"), rows_dropped=("dropped", "sum"))
    return counts.reset_index().astype({"findings": "int64", "rows_dropped": "int64"})


def _card(value: str, label: str, cls: str = "") -> str:
    cls_attr = f' class="value {cls}"' if cls else ' class="value"'
    return (
        f'<div class="card"><div{cls_attr}>{_e(value)}</div>'
        f'<div class="label">{_e(label)}</div></div>'
    )


def _cards(cards: list[str]) -> str:
    return '<div class="cards">' + "".join(cards) + "</div>"


def render_report_html(
    result: CoverageResult,
    *,
    created: str | None = None,
    figures: Figures = (),
    trend_figures: Figures = (),
    files: Sequence[tuple[str, str]] = (),
) -> str:
    """``report.html``: what a planner hands over, in the order it is read. The headline
    numbers, then the county table (largest fibre gap first, each county linking to its map;
    areas without any village outline apart, unranked), then the gap lists, the five-way
    classes, the trend by period (its per-county charts folded away), the static maps, the
    corrections, the input findings, the inputs and links into the run folder.
    Self-contained; every value is escaped.

    Parameters
    ----------
    result
        What :func:`ruralcov.analyse` or :func:`ruralcov.runfolder.read_run` returned.
    created
        The run's time, shown under the title.
    figures
        ``(path relative to the run folder, caption)`` of the static map PNGs
        (:func:`ruralcov.maps.report_figures`), shown under "Maps". Given when the maps were
        drawn, which is also when the county table links to the county maps.
    trend_figures
        The same for the per-county trend charts (runs with periods).
    files
        ``(path, description)`` of files of the run folder listed after the tables.

    Returns
    -------
    str
        The page.
    """
    cfg = result.config
    f = headline_figures(result)
    parts = [
        *_title_html(result, created),
        "<h2>Headline</h2>",
        _cards(_headline_cards(f)),
        "<h2>Speed</h2>",
        _cards(_speed_cards(f)),
        "<p>Shares are divided by every administrative village of the register, including "
        "villages without geometry or speed tests. The gap is "
        "max(0, ceil(target × villages) − fibre villages), computed exactly.</p>",
        *_summary_html(result, linked=bool(figures)),
        *_gaps_html(result),
        *_five_way_html(result),
        *_trend_html(result, trend_figures),
        *_maps_html(figures),
        *_corrections_html(result),
        *_findings_html(result),
        *_inputs_html(result),
        *_files_html(files),
    ]
    return page(f"ruralcov report — {cfg.run.name}", "\n".join(parts))


def _title_html(result: CoverageResult, created: str | None) -> list[str]:
    cfg = result.config
    meta = f"profile {_e(cfg.run.profile)}"
    if created:
        meta += f" · created {_e(created)}"
    provenance = cfg.run.provenance.strip() or "No provenance was given for these inputs."
    return [
        f"<h1>ruralcov report — {_e(cfg.run.name)}</h1>",
        f'<p class="meta">{meta}</p>',
        f'<div class="provenance"><strong>Data provenance.</strong> {_e(provenance)}</div>',
    ]


def _headline_cards(f: dict[str, Any]) -> list[str]:
    n = f.get("villages")
    share = f.get("fibre_share")
    without_geom = None if n is None else n - (f.get("villages_with_geometry") or 0)
    # on target by the exact gap, never share >= target in floats (two different exact
    # values can round to one float)
    on_target = share is not None and f.get("fibre_gap_villages") == 0
    return [
        _card(_fmt_int(f.get("register_units")), "entries in the village register"),
        _card(
            _fmt_int(n),
            f"administrative villages (denominator; {_fmt_int(without_geom)} without geometry)",
        ),
        _card(_fmt_int(f.get("fibre_villages")), "administrative villages with fibre"),
        _card(
            _fmt_pct(share),
            f"fibre share vs target {_fmt_pct(f.get('fibre_target'), 0)}",
            "good" if on_target else "bad",
        ),
        _card(
            _fmt_int(f.get("fibre_gap_villages")),
            "villages short of the fibre target (gap)",
            "good" if not f.get("fibre_gap_villages") else "bad",
        ),
    ]


def _speed_cards(f: dict[str, Any]) -> list[str]:
    speed_target = f.get("village_download_mbps")
    urban = f.get("community_download_mbps")
    return [
        _card(
            _fmt_int(f.get("speed_meets")),
            f"villages meeting {speed_target:g} Mbps"
            if speed_target is not None
            else "villages meeting the speed target",
            "good",
        ),
        _card(_fmt_int(f.get("speed_below")), "villages below the speed target", "bad"),
        _card(_fmt_int(f.get("speed_insufficient")), "villages with too few speed tests"),
        _card(
            f"{_fmt_int(f.get('communities_speed_meets'))} of {_fmt_int(f.get('communities'))}",
            "communities at the urban target"
            + (f" ({urban:g} Mbps)" if urban is not None else ""),
        ),
    ]


def _five_way_html(result: CoverageResult) -> list[str]:
    """Cards for the five-way classes and links to the discrepancy lists (runs with
    capability records only)."""
    v = result.villages
    if not is_five_way(v):
        return []
    is_village = v["kind"] == "village"
    counts = v.loc[is_village, "speed_class"].value_counts()
    basis = str(v["speed_basis"].iloc[0]) if len(v) and "speed_basis" in v.columns else ""
    cards = [_card(_fmt_int(int(counts.get(cls, 0))), f"{cls.replace('_', ' ')}: {text}",
                   _FIVE_WAY_CSS.get(cls, "")) for cls, text in FIVE_WAY_TEXT.items()]
    links = [
        (key, f"tables/gaps_{key}.csv", text)
        for key, text in (
            ("fibre_but_slow", "fibre on record but measured below the target"),
            ("fast_without_fibre", "no fibre on record, yet measurement or capability meets"),
        )
        if key in result.gaps
    ]
    return [
        "<h3>Speed classes: capability and measurement</h3>",
        _cards(cards),
        f"<p>Administrative villages by five-way class. The speed share counts basis "
        f"<code>{_e(basis)}</code> (see the README). Discrepancy lists:</p>\n<ul>",
        *(f'<li><a href="{_e(h)}">{_e(h)}</a> — {_e(x)} ({_fmt_int(len(result.gaps[k]))} '
          "villages)</li>" for k, h, x in links),
        "</ul>",
    ]


def _trend_html(result: CoverageResult, figures: Figures) -> list[str]:
    """The period-by-period section (runs with ``[speed] periods`` only): the top level's
    table, and the per-county charts in a folded ``<details>`` (a province has a hundred
    counties: open on demand, loaded only then)."""
    trends = getattr(result, "trends", None)
    if not trends:
        return []
    top = next(lv for lv in (*LEVELS, *trends) if lv in trends)
    periods = sorted(set(trends[top]["period"]))
    out = [
        "<h2>Trend by period</h2>",
        f"<p>Periods {_e(', '.join(periods))}; the headline above is {_e(periods[-1])}. Fibre "
        "comes from the fibre inputs, which have no period, so only the speed figures move. "
        + " ".join(f'<a href="tables/trend_{_e(lv)}.csv">trend_{_e(lv)}.csv</a>'
                   for lv in trends) + "</p>",
        html_table(trends[top], columns=["code", "name", "period", "villages", "fibre_share",
                                         "speed_meets", "speed_share", "tests"]),
    ]
    if figures:
        out.append('<details class="trends"><summary>Trend chart of each area '
                   f"({len(figures):,})</summary>")
        out.extend(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}" width="320" loading="lazy">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
            for src, caption in figures
        )
        out.append("</details>")
    return out


def _summary_html(result: CoverageResult, *, linked: bool) -> list[str]:
    """The areas of the finest level up to county, largest fibre gap first, each county
    linking to its map (``linked``: the maps were drawn); areas without any village outline
    in a short list of their own, marked and not ranked."""
    level = _summary_level(result)
    if level is None:
        return []
    ranked, unmapped = ranked_areas(result.summaries[level])
    links = None
    if linked and level == "county":
        links = ("name", [f"maps/{county_file(c)}" for c in ranked["code"]])
    out = [
        f"<h2>By {_e(level)}, largest fibre gap first</h2>",
        html_table(ranked, columns=_SUMMARY_SHOWN, links=links),
    ]
    if len(unmapped):
        out += [
            f"<h3>Not mapped: no village outline ({len(unmapped)})</h3>",
            "<p>No administrative village of these areas has a polygon "
            "(villages_with_geometry = 0), so they are not drawn, not planned and not ranked "
            "above; their villages count in every total.</p>",
            html_table(unmapped.assign(map=NOT_MAPPED), columns=_UNMAPPED_SHOWN),
        ]
    out.append(f'<p>All levels: see the <a href="tables/summary_{_e(level)}.csv">'
               "summary tables</a> and the workbook.</p>")
    return out


def _gaps_html(result: CoverageResult) -> list[str]:
    """The lists of villages behind the gap numbers, with their sizes."""
    items = [
        f'<li><a href="tables/{_e(name)}.csv">tables/{_e(name)}.csv</a> — '
        f"{_fmt_int(len(result.gaps[key]) if key in result.gaps else 0)} rows: "
        f"{_e(_GAP_TEXT[key])}</li>"
        for key, name in GAP_TABLES.items()
    ]
    return [
        "<h2>Gap lists</h2>",
        "<p>Every village behind each gap, one row each with its evidence (also sheets of "
        '<a href="report.xlsx">report.xlsx</a>):</p>\n<ul>',
        *items,
        "</ul>",
    ]


def _maps_html(figures: Figures) -> list[str]:
    if not figures:
        return []
    return [
        '<h2>Maps</h2>\n<p>Interactive maps: <a href="maps/index.html">'
        "maps/index.html</a> (province map and one map per county).</p>",
        *(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}" style="max-width:100%">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
            for src, caption in figures
        ),
    ]


def _corrections_html(result: CoverageResult) -> list[str]:
    applied = getattr(result, "corrections", None)
    if applied is None or not len(applied):
        return []
    return [
        f"<h2>Corrections applied ({len(applied)})</h2>",
        "<p>Overrides from the corrections ledger, applied after classification; every "
        'number above includes them. Also in <a href="tables/corrections.csv">'
        "tables/corrections.csv</a> and the villages' <code>corrections</code> column.</p>",
        html_table(applied),
    ]


def _findings_html(result: CoverageResult) -> list[str]:
    counts = _issue_counts(result.issues)
    if counts.empty:
        return ["<h2>Input findings</h2>", "<p>No findings about the inputs.</p>"]
    return [
        "<h2>Input findings</h2>",
        html_table(counts),
        '<p>Every finding, row by row: <a href="tables/issues.csv">tables/issues.csv</a>.</p>',
    ]


def _inputs_html(result: CoverageResult) -> list[str]:
    if not result.inputs:
        return []
    rows = pd.DataFrame(
        [
            {
                "layer": rec.layer,
                "file": getattr(rec.path, "label", None) or Path(rec.path).name,
                "rows_read": rec.rows_read,
                "rows_used": rec.rows_used,
                "rows_dropped": sum(rec.dropped.values()),
            }
            for rec in result.inputs
        ]
    )
    return ["<h2>Inputs</h2>", html_table(rows)]


def _files_html(files: Sequence[tuple[str, str]]) -> list[str]:
    links = [
        ("maps/index.html", "maps"),
        ("report.xlsx", "workbook with every table (open this one in Excel or WPS)"),
        ("tables/villages.csv", "every village of the register"),
        *(
            (f"tables/{name}.csv", f"villages behind the gap: {key.replace('_', ' ')}")
            for key, name in GAP_TABLES.items()
        ),
        ("tables/issues.csv", "input findings"),
        ("villages.parquet", "villages with geometry (GeoParquet)"),
        *files,
        ("manifest.json", "inputs, parameters, versions and file hashes"),
        ("config.toml", "configuration to reproduce this run"),
    ]
    return [
        "<h2>Files</h2>\n<ul>",
        *(f'<li><a href="{_e(href)}">{_e(href)}</a> — {_e(text)}</li>' for href, text in links),
        "</ul>",
    ]


def add_report_section(path: Path | str, section_id: str, section_html: str) -> None:
    """Put ``<section id="section_id">…</section>`` into an existing ``report.html``.

    For steps that add to a finished run folder (``ruralcov plan``): an earlier section with
    the same id is replaced, otherwise the section goes before the "Files" list (or at the
    end of the body).

    Parameters
    ----------
    path
        The report.
    section_id
        The section's ``id``.
    section_html
        One complete ``<section id=…>`` element.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    found = re.search(
        rf'<section id="{re.escape(section_id)}">.*?</section>\n?', text, flags=re.DOTALL
    )
    if found:
        text = text[: found.start()] + section_html + "\n" + text[found.end() :]
    else:
        at = text.find("<h2>Files</h2>")
        at = at if at >= 0 else text.rfind("</body>")
        text = text[:at] + section_html + "\n" + text[at:]
    path.write_text(text, encoding="utf-8", newline="\n")
