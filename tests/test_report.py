"""The run folder written from the small world (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pytest

from ruralcov import report
from ruralcov.config import load_config
from ruralcov.errors import ConfigError, OutputError
from ruralcov.pipeline import CoverageResult, InputRecord
from ruralcov.report import (
    build_manifest,
    render_report_html,
    write_csv,
    write_run,
    write_tables,
    writer,
)
from ruralcov.report import tables as report_tables
from ruralcov.report.tables import write_csv_keeping
from ruralcov.schema import SUMMARY_COLUMNS, VILLAGE_COLUMNS
from ruralcov.validate import ISSUE_FIELDS

RUN_FILES = [
    "villages.parquet",
    "assets.parquet",
    "tables/villages.csv",
    "tables/summary_province.csv",
    "tables/summary_city.csv",
    "tables/summary_county.csv",
    "tables/summary_township.csv",
    "tables/gaps_no_fibre.csv",
    "tables/gaps_below_speed.csv",
    "tables/gaps_insufficient_data.csv",
    "tables/issues.csv",
    "report.xlsx",
    "maps/index.html",
    "report.html",
    "manifest.json",
    "config.toml",
]

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def run(small_result: CoverageResult, tmp_path: Path) -> Path:
    return write_run(small_result, tmp_path / "out")


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)


def test_every_run_file_exists(run: Path) -> None:
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert (run / "maps" / "province.html").is_file()
    # nothing else is left next to the run folder
    assert sorted(p.name for p in run.parent.iterdir()) == ["out"]


def test_villages_csv(run: Path, small_result: CoverageResult) -> None:
    raw = (run / "tables" / "villages.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = _read_csv(run / "tables" / "villages.csv")
    assert len(table) == len(small_result.villages) == 9
    assert list(table.columns)[: len(VILLAGE_COLUMNS)] == list(VILLAGE_COLUMNS)
    assert "geometry" not in table.columns
    row = table.set_index("village_code").loc["140105002002"]
    assert row["village_name"] == "南庄村委会"
    assert row["fibre"] == "TRUE" and row["fibre_nearby"] == "FALSE"
    assert row["county_code"] == "140105"
    # rounded in the CSV: 12.0 * 0.8123456 = 9.7481472 -> 9.75 Mbps; share 1/3 -> 0.3333
    assert row["download_ci_low_mbps"] == "9.75"
    west = table.set_index("village_code").loc["140105001002"]
    assert west["share_tests_at_target"] == "0.3333"
    # a village without geometry is a row like any other, with empty speed figures
    hexi = table.set_index("village_code").loc["140106001001"]
    assert hexi["has_geometry"] == "FALSE" and hexi["download_median_mbps"] == ""


def test_parquet_keeps_full_precision(run: Path, small_result: CoverageResult) -> None:
    back = gpd.read_parquet(run / "villages.parquet")
    assert len(back) == 9 and back.crs.to_epsg() == 4326
    assert back["geometry"].isna().sum() == 1
    code = back["village_code"] == "140105002002"
    assert back.loc[code, "download_ci_low_mbps"].item() == 12.0 * 0.8123456


def test_summary_and_gap_tables(run: Path) -> None:
    for level in ("province", "city", "county", "township"):
        table = _read_csv(run / "tables" / f"summary_{level}.csv")
        assert list(table.columns) == list(SUMMARY_COLUMNS)
    county = _read_csv(run / "tables" / "summary_county.csv").set_index("code")
    assert county.loc["140105", ["villages", "fibre_villages", "fibre_gap_villages"]].tolist() == [
        "4",
        "3",
        "1",
    ]
    assert county.loc["140106", "fibre_share"] == "0.3333"
    gaps = {
        name: _read_csv(run / "tables" / f"gaps_{name}.csv")["village_code"].tolist()
        for name in ("no_fibre", "below_speed", "insufficient_data")
    }
    assert gaps == {
        "no_fibre": ["140105002001", "140106001001", "140106002002"],
        "below_speed": ["140105001002", "140106002002"],
        "insufficient_data": ["140105002001", "140106001001"],
    }
    issues = _read_csv(run / "tables" / "issues.csv")
    assert list(issues.columns) == list(ISSUE_FIELDS) and len(issues) == 5


def test_xlsx_codes_stay_text(run: Path) -> None:
    book = openpyxl.load_workbook(run / "report.xlsx", read_only=True)
    assert {"villages", "summary_county", "gaps_insufficient_data", "issues"} <= set(
        book.sheetnames
    )
    assert all(len(name) <= 31 for name in book.sheetnames)
    rows = list(book["villages"].iter_rows(values_only=True))
    header = list(rows[0])
    assert header[: len(VILLAGE_COLUMNS)] == list(VILLAGE_COLUMNS)
    first = dict(zip(header, rows[1], strict=True))
    assert first["village_code"] == "140105001001"
    assert first["province_code"] == "14"
    assert first["fibre"] is True
    assert first["tests"] == 10
    county = list(book["summary_county"].iter_rows(values_only=True))
    assert county[1][1] == "140105"
    book.close()
    # header frozen and filterable
    sheet = openpyxl.load_workbook(run / "report.xlsx")["villages"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref is not None and sheet.auto_filter.ref.startswith("A1:")


def test_manifest_balances_and_hashes_match(run: Path, small_result: CoverageResult) -> None:
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_name"] == "small-world"
    assert manifest["targets"] == {
        "fibre_share": 0.98,
        "village_download_mbps": 12.0,
        "community_download_mbps": 100.0,
    }
    assert manifest["metric_crs"] == "EPSG:32649"
    assert set(manifest["versions"]) >= {"python", "pandas", "geopandas", "shapely", "pyarrow"}
    assert manifest["headline"]["fibre_gap_villages"] == 3
    assert [i["layer"] for i in manifest["inputs"]] == ["villages", "fibre[0]", "fibre[1]", "speed"]
    for entry in manifest["inputs"]:
        assert entry["rows_read"] == entry["rows_used"] + sum(entry["dropped"].values())
    written = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["outputs"]) == written
    for rel, digest in manifest["outputs"].items():
        assert hashlib.sha256((run / rel).read_bytes()).hexdigest() == digest, rel


def test_manifest_refuses_unbalanced_counts(small_result: CoverageResult, tmp_path: Path) -> None:
    bad = InputRecord("speed", tmp_path / "x.csv", "0" * 64, 10, 8, {"negative_speed": 1})
    result = dataclasses.replace(small_result, inputs=(bad,))
    with pytest.raises(AssertionError, match="rows read 10"):
        build_manifest(result, tmp_path, {})


def test_config_round_trips(run: Path, small_result: CoverageResult) -> None:
    back = load_config(run / "config.toml")
    expected = dataclasses.replace(
        small_result.config,
        run=dataclasses.replace(small_result.config.run, out=None),
        base=(run).resolve(),
    )
    assert back == expected


def test_report_html(run: Path) -> None:
    text = (run / "report.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in text
    assert "hand-made (synthetic)" in text  # the provenance, shown as given
    for figure in ("57.14 %", "98 %", ">9<", ">7<", ">4<", ">3<", "1 of 1"):
        assert figure in text, figure
    # the county table is sorted by gap: 迎泽区 (gap 2) before 小店区 (gap 1)
    assert text.index("迎泽区") < text.index("小店区")
    assert 'href="maps/index.html"' in text and 'href="tables/villages.csv"' in text


def test_no_page_loads_anything_from_the_network(run: Path) -> None:
    pages = list(run.rglob("*.html"))
    # report, map index, province map and one map per county of the small world's two
    # (test_maps.py checks the maps themselves)
    assert len(pages) == 5
    for page in pages:
        text = page.read_text(encoding="utf-8")
        refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, flags=re.I)
        assert not [r for r in refs if r.lower().startswith(("http:", "https:", "//"))], page
        assert "@import" not in text
        if page.name in ("report.html", "index.html"):  # map pages run local scripts only
            assert "<script" not in text.lower()


def test_user_text_is_escaped(small_result: CoverageResult, tmp_path: Path) -> None:
    villages = small_result.villages.copy()
    villages.loc[villages["village_code"] == "140105002001", "village_name"] = XSS
    summaries = dict(small_result.summaries)
    county = summaries["county"].copy()
    county.loc[county["code"] == "140105", "name"] = XSS
    summaries["county"] = county
    config = dataclasses.replace(
        small_result.config,
        run=dataclasses.replace(small_result.config.run, provenance=f"synthetic {XSS}"),
    )
    result = dataclasses.replace(
        small_result, villages=villages, summaries=summaries, config=config
    )
    html = render_report_html(result)
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    out = write_run(result, tmp_path / "out")
    for page in out.rglob("*.html"):
        assert XSS not in page.read_text(encoding="utf-8"), page
    assert XSS in _read_csv(out / "tables" / "villages.csv")["village_name"].tolist()


def test_failure_leaves_nothing(
    small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "write_xlsx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_run(small_result, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_run(
    small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_run(small_result, tmp_path / "out")
    before = (out / "manifest.json").read_bytes()
    monkeypatch.setattr(writer, "render_report_html", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_run(small_result, out, force=True)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_rewrite_replaces_and_keeps_extra_inputs(
    small_result: CoverageResult, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    inputs = out / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "villages.csv").write_text("code,name\n", encoding="utf-8")
    write_run(small_result, out, extra_inputs=inputs)
    assert (out / "inputs" / "villages.csv").read_text(encoding="utf-8") == "code,name\n"
    (out / "stale.txt").write_text("from an older run", encoding="utf-8")
    write_run(small_result, out, extra_inputs=out / "inputs", force=True)  # run again over it
    assert (out / "inputs" / "villages.csv").is_file()
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert not any(k.startswith("inputs/") for k in manifest["outputs"])


def test_input_paths_inside_the_run_are_relative(
    small_result: CoverageResult, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rec = small_result.inputs[0]
    moved = dataclasses.replace(rec, path=out / "inputs" / "villages.csv")
    result = dataclasses.replace(small_result, inputs=(moved, *small_result.inputs[1:]))
    manifest = build_manifest(result, out, {"report.html": "0" * 64})
    assert manifest["inputs"][0]["path"] == "inputs/villages.csv"
    assert Path(manifest["inputs"][1]["path"]).is_absolute()


def test_refuses_to_replace_a_folder_that_is_not_a_run(
    small_result: CoverageResult, tmp_path: Path
) -> None:
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="not a ruralcov run folder"):
        write_run(small_result, out)
    assert (out / "thesis.docx").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents"]


def test_maps_skipped(small_result: CoverageResult, tmp_path: Path) -> None:
    out = write_run(small_result, tmp_path / "out", maps=False)
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["index.html"]
    assert "skipped" in (out / "maps" / "index.html").read_text(encoding="utf-8")


def test_write_tables_alone(small_result: CoverageResult, tmp_path: Path) -> None:
    paths = write_tables(small_result, tmp_path / "tables")
    assert sorted(p.name for p in paths) == sorted(
        Path(n).name for n in RUN_FILES if n.startswith("tables/")
    )


def _result_reading_from(result: CoverageResult, inputs: Path) -> CoverageResult:
    """The small result as if its villages had been read from ``inputs/villages.csv``."""
    moved = dataclasses.replace(result.inputs[0], path=inputs / "villages.csv")
    return dataclasses.replace(result, inputs=(moved, *result.inputs[1:]))


def test_rerun_from_the_run_folder_keeps_its_inputs(
    small_result: CoverageResult, tmp_path: Path
) -> None:
    # `ruralcov demo` then `ruralcov run out/config.toml` into the same folder
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)
    (out / "inputs" / "villages.csv").write_text("code,name\n", encoding="utf-8")
    write_run(small_result, out, extra_inputs=out / "inputs")
    rerun = _result_reading_from(small_result, out / "inputs")
    write_run(rerun, out, force=True)
    assert (out / "inputs" / "villages.csv").is_file()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"][0]["path"] == "inputs/villages.csv"


def test_failed_rerun_puts_the_inputs_back(
    small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)
    (out / "inputs" / "villages.csv").write_text("code,name\n", encoding="utf-8")
    write_run(small_result, out, extra_inputs=out / "inputs")
    real_replace = os.replace

    def refuse_swap(src: Path, dst: Path) -> None:
        if Path(src) == out:  # renaming the old run away fails, as with a file open on Windows
            raise PermissionError("file in use")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_swap)
    with pytest.raises(OutputError, match="Close files opened from it"):
        write_run(small_result, out, extra_inputs=out / "inputs", force=True)
    monkeypatch.undo()
    assert (out / "inputs" / "villages.csv").read_text(encoding="utf-8") == "code,name\n"
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _gap_variant(result: CoverageResult, kind: str) -> CoverageResult:
    """The small result with texts and gap lists that test the reuse of village rows."""
    villages = result.villages.copy()
    names = villages["village_name"].astype(object).to_numpy().copy()
    names[:3] = ['a, "quoted" name', "=1+1", " edge "]
    if kind == "line_break":  # a CRLF inside a cell: CSV lines are no longer rows
        names[4] = "two\r\nlines"
    villages["village_name"] = names
    note = [True, "x", False, None, True, "y", False, True, None][: len(villages)]
    villages["note"] = pd.Series(note, index=villages.index, dtype=object)
    table = pd.DataFrame(villages.drop(columns="geometry"))
    gaps = {
        "no_fibre": table.iloc[[0, 2, 4, 6]],  # "note" holds booleans only here
        "below_speed": table.iloc[[8, 1, 1]],  # out of order, a village twice
        "insufficient_data": table.iloc[0:0],
    }
    if kind == "edited":  # not a selection of the villages table: written on its own
        gaps["below_speed"] = gaps["below_speed"].assign(tests=[1, 2, 3])
    gaps = {k: v.reset_index(drop=True) for k, v in gaps.items()}
    return dataclasses.replace(result, villages=villages, gaps=gaps)


@pytest.mark.parametrize("kind", ["plain", "line_break", "edited"])
def test_gap_tables_reuse_village_rows_byte_for_byte(
    small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    result = _gap_variant(small_result, kind)
    reused = report.village_rows(report.result_tables(result))
    expected = {"gaps_no_fibre", "gaps_below_speed"} - ({"gaps_below_speed"} if kind == "edited"
                                                         else set())
    assert set(reused) == expected
    write_tables(result, tmp_path / "reused")
    monkeypatch.setattr(report_tables, "village_rows", lambda tables: {})  # each on its own
    write_tables(result, tmp_path / "alone")
    for path in sorted((tmp_path / "alone").iterdir()):
        assert (tmp_path / "reused" / path.name).read_bytes() == path.read_bytes(), path.name
    gaps = _read_csv(tmp_path / "reused" / "gaps_no_fibre.csv")
    assert gaps["note"].tolist() == ["TRUE", "FALSE", "TRUE", "FALSE"]  # as booleans
    report.write_xlsx(result, tmp_path / "book.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "book.xlsx")["gaps_below_speed"]
    names = result.gaps["below_speed"]["village_name"].tolist()
    assert [c.value for c in sheet["B"][1:]] == [report.neutralise(n) for n in names]


@pytest.mark.parametrize("kind", ["plain", "line_break"])
def test_workbook_made_in_chunks_of_rows_is_byte_identical(
    small_result: CoverageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """report.xlsx with its cells made 2 rows at a time (every table of the small world split
    into several chunks, the last one short) is the file made in one chunk, byte for byte."""
    import zipfile

    from ruralcov import xlsxrows

    result = _gap_variant(small_result, kind)
    tables = report.result_tables(result)
    assert len(tables["villages"]) > 4 and len(tables["villages"]) % 2 == 1
    created = "2024-05-01T08:00:00+00:00"
    monkeypatch.setattr(xlsxrows, "CHUNK", 10**9)
    report.write_xlsx(result, tmp_path / "whole.xlsx", created=created)
    asked: list[int] = []
    rows_xml = xlsxrows.rows_xml

    def counted(rows, styles, **kw):  # the real rows_xml, with the sizes of the chunks asked
        values = rows.values
        rows = dataclasses.replace(rows, values=lambda a, b: asked.append(b - a) or values(a, b))
        return rows_xml(rows, styles, **kw)

    monkeypatch.setattr(xlsxrows, "CHUNK", 2)
    monkeypatch.setattr(xlsxrows, "rows_xml", counted)
    report.write_xlsx(result, tmp_path / "chunks.xlsx", created=created)
    assert max(asked) == 2 and asked.count(1) >= 1 and len(asked) > len(tables)
    assert (tmp_path / "whole.xlsx").read_bytes() == (tmp_path / "chunks.xlsx").read_bytes()
    with zipfile.ZipFile(tmp_path / "chunks.xlsx") as book:
        villages = book.read("xl/worksheets/sheet2.xml").decode()
    assert villages.count("<row ") == len(tables["villages"]) + 1


@pytest.mark.parametrize("chunk", [1, 2, 3, 50_000])
def test_csv_written_in_chunks_keeps_the_lines_asked_for(tmp_path: Path, chunk: int) -> None:
    frame = pd.DataFrame({"code": [f"14{i}" for i in range(7)],
                          "name": ["a", 'b, "c"', "d", "", "e", "f", "g"],
                          "x": [0.1, 1 / 3, None, 2.0, -1e-300, 5.0, 1e20],
                          # a column of booleans and text, with chunks of only booleans
                          "flag": pd.Series([True, False, "x", None, True, True, False],
                                            dtype=object),
                          "ok": pd.Series([True, None, False, None, True, True, False],
                                          dtype=object)})
    write_csv(frame, tmp_path / "whole.csv")
    whole = (tmp_path / "whole.csv").read_bytes()
    lines = whole.decode("utf-8-sig").split("\r\n")
    assert lines[1].endswith(",TRUE,TRUE") and lines[3].endswith(",x,FALSE")
    kept = write_csv_keeping(frame, tmp_path / "chunks.csv", np.array([5, 0, 5, 6]), chunk=chunk)
    assert (tmp_path / "chunks.csv").read_bytes() == whole
    assert kept == {-1: lines[0], 0: lines[1], 5: lines[6], 6: lines[7]}
    report_tables._write_lines(tmp_path / "picked.csv", kept, np.array([6, 0, 6]), chunk=chunk)
    picked = "\r\n".join([lines[0], lines[7], lines[1], lines[7], ""])
    assert (tmp_path / "picked.csv").read_bytes() == picked.encode("utf-8-sig")
    frame.loc[3, "name"] = "two\r\nlines"  # lines are no longer rows: nothing is kept
    write_csv(frame, tmp_path / "whole.csv")
    kept = write_csv_keeping(frame, tmp_path / "chunks.csv", np.array([5]), chunk=chunk)
    assert kept is None
    assert (tmp_path / "chunks.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


# --- report.html: what a planner hands over ------------------------------------------------


def _rows(html: str, heading: str) -> list[str]:
    """The body rows of the first table after ``heading``, each as its cells' text joined by
    ``|`` (tags dropped)."""
    table = html[html.index(heading):]
    table = table[table.index("<tbody>"):table.index("</tbody>")]
    return [
        "|".join(re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", tr))
        for tr in re.findall(r"<tr>(.*?)</tr>", table)
    ]


def test_report_reads_headline_county_table_then_gap_lists(run: Path) -> None:
    html = (run / "report.html").read_text(encoding="utf-8")
    order = ["<h2>Headline</h2>", "<h2>By county, largest fibre gap first</h2>",
             "<h2>Gap lists</h2>", "<h2>Maps</h2>", "<h2>Files</h2>"]
    at = [html.index(h) for h in order]
    assert at == sorted(at), order
    # largest gap first (迎泽区 2, 小店区 1), each county's name linking to its map page
    assert [r.split("|")[:2] for r in _rows(html, "By county")] == [
        ["140106", "迎泽区"], ["140105", "小店区"]]
    links = re.findall(r'<td><a href="(maps/county_[^"]+)">([^<]+)</a></td>', html)
    assert links == [("maps/county_140106.html", "迎泽区"), ("maps/county_140105.html", "小店区")]
    assert all((run / href).is_file() for href, _ in links)
    # the gap lists with their sizes (the small world's docstring: 3, 2 and 2 rows)
    gaps = html[html.index("<h2>Gap lists</h2>"):html.index("<h2>Maps</h2>")]
    for name, n in (("gaps_no_fibre", 3), ("gaps_below_speed", 2),
                    ("gaps_insufficient_data", 2)):
        assert f'<a href="tables/{name}.csv">tables/{name}.csv</a> — {n} rows' in gaps, name


def test_report_without_maps_links_no_county_page(small_result: CoverageResult,
                                                  tmp_path: Path) -> None:
    out = write_run(small_result, tmp_path / "out", maps=False)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "迎泽区" in html and "county_14010" not in html


def _without_outlines(result: CoverageResult, county: str) -> CoverageResult:
    """``result`` with no polygon for any unit of ``county`` (as the demo's development
    zones): its summaries say so (villages_with_geometry = 0)."""
    villages = result.villages.copy()
    gone = villages["county_code"] == county
    villages.loc[gone, "geometry"] = None
    villages.loc[gone, "has_geometry"] = False
    summaries = {}
    for level, summary in result.summaries.items():
        summary = summary.copy()
        summary.loc[summary["code"].str.startswith(county), "villages_with_geometry"] = 0
        summaries[level] = summary
    return dataclasses.replace(result, villages=villages, summaries=summaries)


def test_area_without_outline_is_marked_and_not_ranked(small_result: CoverageResult,
                                                       tmp_path: Path) -> None:
    # 迎泽区 has the largest gap (2) but no village outline: it cannot be drawn or planned
    out = write_run(_without_outlines(small_result, "140106"), tmp_path / "out")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert _rows(html, "By county") == [
        "140105|小店区|4|4|3|75.00 %|1|2|1|1|1|1"]
    assert _rows(html, "Not mapped") == ["140106|迎泽区|no outline: not mapped|3|1|2|0"]
    assert html.index("Not mapped") > html.index("By county")
    assert re.findall(r'href="(maps/county_[^"]+)"', html) == ["maps/county_140105.html"]
    assert not (out / "maps" / "county_140106.html").exists()
