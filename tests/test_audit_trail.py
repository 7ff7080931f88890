"""Audit trail: safe outputs, determinism, corrections, claimed-list audit, run diff, verify."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tomllib
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ruralcov import analyse, load_config
from ruralcov.audit import audit_claims
from ruralcov.cli import cli
from ruralcov.config import CorrectionsConfig
from ruralcov.corrections import check_ledger, read_ledger
from ruralcov.errors import ConfigError, OutputExistsError, SchemaError
from ruralcov.report import write_run
from ruralcov.runfolder import read_villages
from sheetcells import HYPERLINK, formula_like, unsafe_cells
from worlds import EXPECTED, square, write_north_world


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruralcov: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def north_run(tmp_path_factory):
    """The north world and its run folder, written once (treat both as read-only)."""
    base = tmp_path_factory.mktemp("north")
    cfg = write_north_world(base / "in")
    out = base / "run"
    assert invoke("-q", "run", cfg, "--out", out, "--no-maps").exit_code == 0
    return cfg, out


# --- safe outputs --------------------------------------------------------------------------


def test_existing_run_is_not_overwritten_without_force(small_result, tmp_path):
    out = write_run(small_result, tmp_path / "out", maps=False)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        write_run(small_result, out, maps=False)
    assert (out / "manifest.json").read_bytes() == before
    write_run(small_result, out, maps=False, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_run_needs_force_to_replace(north_run, tmp_path):
    cfg, _ = north_run
    out = tmp_path / "run"
    assert invoke("-q", "run", cfg, "--out", out, "--no-maps").exit_code == 0
    stamp = (out / "manifest.json").read_bytes()
    line = one_error_line(invoke("-q", "run", cfg, "--out", out, "--no-maps"))
    assert "already holds a run" in line and "--force" in line
    assert (out / "manifest.json").read_bytes() == stamp
    assert invoke("-q", "run", cfg, "--out", out, "--no-maps", "--force").exit_code == 0


def test_demo_refuses_existing_folders(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "manifest.json").write_text("{}", encoding="utf-8")
    assert "--force" in one_error_line(invoke("-q", "demo", "--out", run))
    assert (run / "manifest.json").is_file()
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "thesis.docx").write_bytes(b"precious")
    line = one_error_line(invoke("-q", "demo", "--out", docs, "--force"))
    assert "not a ruralcov run folder" in line
    assert (docs / "thesis.docx").read_bytes() == b"precious"


INJECTIONS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_formula_injection_is_neutralised(small_result, tmp_path):
    villages = small_result.villages.copy()
    names = list(villages["village_name"])
    names[: len(INJECTIONS)] = INJECTIONS
    villages["village_name"] = names
    villages["fibre_distance_m"] = villages["fibre_distance_m"].astype(float)
    villages.loc[0, "fibre_distance_m"] = -12.5  # a negative number stays a number
    villages.loc[1, "village_name"] = "-7"  # text that is a plain number stays as it is
    result = dataclasses.replace(small_result, villages=villages)
    out = write_run(result, tmp_path / "out", maps=False)
    table = pd.read_csv(
        out / "tables" / "villages.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False
    )
    want = ["'" + s for s in INJECTIONS]
    want[1] = "-7"
    assert table["village_name"].tolist()[: len(INJECTIONS)] == want
    assert table["fibre_distance_m"].iat[0] == "-12.5"
    book = openpyxl.load_workbook(out / "report.xlsx", read_only=True)
    rows = list(book["villages"].iter_rows(values_only=True))
    book.close()  # read-only books keep the file open until closed
    header = rows[0]
    names_col, dist_col = header.index("village_name"), header.index("fibre_distance_m")
    # openpyxl shows the CR that xlsxwriter stored escaped as _x000D_
    cells = [r[names_col].replace("_x000D_", "\r") for r in rows[1 : len(INJECTIONS) + 1]]
    assert cells == want
    assert rows[1][dist_col] == -12.5


def test_run_diff_and_plan_files_have_no_formula_cells(north_run, tmp_path):
    """Names and codes of the register that start formulas reach every table of the run,
    the workbook, the diff against another run and the plan: no cell of any is a formula."""
    base, run_a = north_run
    folder = tmp_path / "in"
    shutil.copytree(base.parent, folder)
    register = pd.read_csv(folder / "register.csv", encoding="utf-8-sig", dtype=str)
    names = ["=1+1", "-1+1", "@evil", HYPERLINK, "\t=1+1", " =2+2", "＝1+1", "-3.5"]
    register["name"] = names
    register["county"] = "=K1"  # every summary's and plan's area code
    extra = {"code": "@V9", "name": "+SUM(1,2)", "kind": "village", "township": "T1",
             "county": "=K1"}  # a village the other run lacks: a row of the diff
    register = pd.concat([register, pd.DataFrame([extra])], ignore_index=True)
    register.to_csv(folder / "register.csv", index=False, encoding="utf-8-sig")
    run = tmp_path / "run"
    assert invoke("-q", "run", folder / base.name, "--out", run, "--no-maps").exit_code == 0
    villages = pd.read_csv(run / "tables" / "villages.csv", encoding="utf-8-sig", dtype=str,
                           keep_default_na=False)
    assert villages["village_name"].tolist() == [
        "'=1+1", "'-1+1", "'@evil", "'" + HYPERLINK, "'=1+1", "'=2+2", "'＝1+1", "-3.5",
        "'+SUM(1,2)"]
    assert set(villages["county_code"]) == {"'=K1"}
    assert invoke("-q", "diff", run_a, run, "--out", tmp_path / "diff").exit_code == 0
    assert invoke("-q", "plan", run, "--no-maps").exit_code == 0
    files = [*sorted((run / "tables").glob("*.csv")), run / "report.xlsx",
             *sorted((tmp_path / "diff").glob("*.csv"))]
    assert {"plan.csv", "plan_summary_county.csv", "diff_villages.csv", "diff_county.csv",
            "issues.csv"} <= {p.name for p in files}
    assert unsafe_cells(*files) == []
    diff = pd.read_csv(tmp_path / "diff" / "diff_villages.csv", encoding="utf-8-sig", dtype=str)
    assert "'@V9" in diff["village_code"].tolist()


_STARTS = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", " ", "  =", "＝", "－", "＠",
                           "-3", "+1", "1", "'", "-3.5"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.tuples(_STARTS, st.text()).map("".join)))
def test_no_written_cell_can_start_a_formula(text):
    """Any text, in any kind of column (text, pandas string, categorical, code) or as a
    header, is written as itself or behind a quote, and never as a cell that starts a
    formula unless it is a plain number."""
    from ruralcov.report import cell_values, for_csv

    frame = pd.DataFrame({
        "name": pd.Series([text], dtype=object),
        "note": pd.Series([text], dtype="string"),
        "kind": pd.Series([text], dtype="category"),
        "village_code": pd.Series([text], dtype=object),
    })
    out = for_csv(frame)
    headed = for_csv(pd.DataFrame({text: [1.5]}))
    cells = [*out.iloc[0].tolist(), headed.columns[0]]
    cells += [v for col in frame.columns for v in cell_values(frame[col])]
    for cell in cells:
        assert cell in (text, "'" + text)
        assert not formula_like(cell), cell


def test_no_text_starting_with_a_letter_or_digit_starts_like_a_formula():
    """formula_like answers at once for a text whose first character is a letter or digit
    (most names and codes), because no such character of any script is a formula sign under
    NFKC: checked here for every code point, with the rule as it reads for all other texts."""
    import sys
    import unicodedata

    signs = [c for c in map(chr, range(sys.maxunicode + 1))
             if c.isalnum() and unicodedata.normalize("NFKC", c)[:1] in "=+-@"]
    assert signs == []


# --- determinism ---------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_tables_and_geoparquet(north_run, tmp_path):
    cfg, first = north_run
    second = tmp_path / "again"
    assert invoke("-q", "run", cfg, "--out", second, "--no-maps").exit_code == 0
    files = ["villages.parquet", *(f"tables/{p.name}" for p in (first / "tables").iterdir())]
    assert len(files) >= 8
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    m1 = json.loads((first / "manifest.json").read_text(encoding="utf-8"))
    m2 = json.loads((second / "manifest.json").read_text(encoding="utf-8"))
    assert m1["config_sha256"] == m2["config_sha256"]
    canonical = json.dumps(m1["parameters"], sort_keys=True).encode("utf-8")
    assert m1["config_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert {"python", "pandas", "pyarrow", "shapely", "pyproj"} <= set(m1["versions"])
    assert m1["ruralcov_version"]


# --- corrections ledger --------------------------------------------------------------------

LEDGER = (
    "village_code,field,value,reason,evidence,author,date\n"
    "V3,fibre,yes,asset_verified_on_site,site photo IMG_0412,Kari Nordmann,2026-05-02\n"
    "V1,speed_class,insufficient_data,test_data_not_representative,"
    "tests during an outage (ticket 881),Ola,2026-05-03\n"
)


def with_ledger(cfg: Path, text: str = LEDGER) -> Path:
    (cfg.parent / "ledger.csv").write_text(text, encoding="utf-8")
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    raw["corrections"] = {"path": "ledger.csv"}
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return cfg


def test_corrections_are_applied_and_listed_everywhere(tmp_path):
    cfg = with_ledger(write_north_world(tmp_path / "in"))
    out = tmp_path / "run"
    assert invoke("-q", "run", cfg, "--out", out, "--no-maps").exit_code == 0
    v = pd.read_csv(
        out / "tables" / "villages.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False
    ).set_index("village_code")
    assert v.loc["V3", "fibre"] == "TRUE" and v.loc["V3", "fibre_basis"] == "correction"
    assert v.loc["V1", "speed_class"] == "insufficient_data"
    assert v.loc["V1", "meets_targets"] == "FALSE"  # recomputed from the corrected class
    assert "site photo IMG_0412" in v.loc["V3", "corrections"]
    assert v.loc["V2", "corrections"] == ""
    applied = pd.read_csv(out / "tables" / "corrections.csv", encoding="utf-8-sig", dtype=str)
    assert applied[["village_code", "field", "old_value", "new_value"]].values.tolist() == [
        ["V3", "fibre", "FALSE", "TRUE"],  # booleans as in every CSV
        ["V1", "speed_class", "meets", "insufficient_data"],
    ]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [c["village_code"] for c in manifest["corrections"]] == ["V3", "V1"]
    ledger_input = next(i for i in manifest["inputs"] if i["layer"] == "corrections")
    assert ledger_input["rows_read"] == ledger_input["rows_used"] == 2
    assert "Corrections applied (2)" in (out / "report.html").read_text(encoding="utf-8")
    # 3 fibre villages by construction + V3; speed meets 2 (V1, V4) - V1
    assert manifest["headline"]["fibre_villages"] == 4
    assert manifest["headline"]["speed_meets"] == 1
    issues = pd.read_csv(out / "tables" / "issues.csv", encoding="utf-8-sig", dtype=str)
    assert (issues["reason"] == "correction_applied").sum() == 2


def test_ledger_problems_are_listed_together(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text(
        "village_code,field,value,reason,evidence,author,date\n"
        "V1,fibre,perhaps,asset_verified_on_site,x,a,2026-01-01\n"
        "V2,colour,red,other,x,a,2026-01-01\n"
        "V3,fibre,yes,other,,a,01/02/2026\n"
        "V4,fibre,no,asset_not_in_service,x,a,2026-01-01\n"
        "V4,fibre,yes,asset_verified_on_site,x,a,2026-01-02\n",
        encoding="utf-8",
    )
    ledger = read_ledger(CorrectionsConfig(path=path))
    with pytest.raises(SchemaError) as err:
        check_ledger(ledger, pd.Series(list(EXPECTED)), path=path)
    text = str(err.value)
    for piece in [
        "row 1: fibre value 'perhaps'",
        "row 2: field 'colour'",
        "row 3: evidence is empty",
        "row 3: date '01/02/2026'",
        "row 5: a second override of fibre for V4",
    ]:
        assert piece in text, piece


# --- audit of a claimed list ---------------------------------------------------------------


def test_audit_finds_every_planted_error(north_run, tmp_path):
    _, run = north_run
    claimed = pd.DataFrame(
        {
            "village_code": ["V1", "V3", "V99", "V1", None, None, None, "C1"],
            "name": [None, None, None, None, "Sørby", "Nowhere", None, None],
            "township": [None, None, None, None, "T1", "T1", None, None],
        }
    )
    villages = read_villages(run)
    # the planted errors: V3 has no fibre, V99 is unknown, V1 is claimed twice, "Nowhere"
    # is no village of T1, row 7 has no key; V4 (fibre by register) and V2 are not claimed
    # by code, V2 is claimed by name
    claimed.to_csv(tmp_path / "claimed.csv", index=False)
    audit = audit_claims(villages, claimed, code="village_code", name="name", township="township")
    rows = audit.rows

    def plain(v):
        return None if pd.isna(v) else v

    got = [
        (s, plain(r), plain(c))
        for s, r, c in zip(rows["status"], rows["claim_row"], rows["village_code"], strict=True)
    ]
    assert got == [
        ("confirmed", 1, "V1"),
        ("claimed_without_evidence", 2, "V3"),
        ("unknown_code", 3, None),
        ("duplicate_claim", 4, "V1"),
        ("confirmed", 5, "V2"),
        ("name_not_found", 6, None),
        ("missing_key", 7, None),
        ("confirmed", 8, "C1"),
        ("evidence_not_claimed", None, "V4"),
    ]
    counts = audit.summary.set_index("status")["rows"]
    assert counts["confirmed"] == 3 and counts["name_ambiguous"] == 0
    # through the CLI: files written, summary printed
    result = invoke(
        "audit",
        run,
        "--claimed",
        tmp_path / "claimed.csv",
        "--name",
        "name",
        "--township",
        "township",
        "--code",
        "village_code",
        "--out",
        tmp_path / "a",
    )
    assert result.exit_code == 0, result.output
    assert "claimed_without_evidence" in result.stdout
    written = pd.read_csv(tmp_path / "a" / "audit.csv", encoding="utf-8-sig", dtype=str)
    assert written["status"].tolist() == [g[0] for g in got]
    assert (tmp_path / "a" / "audit.xlsx").is_file()


def test_audit_by_name_is_never_guessed():
    villages = pd.DataFrame(
        {
            "village_code": ["A1", "A2", "B1"],
            "village_name": ["东关村委会", "东关村民委员会", "西关村委会"],
            "kind": ["village"] * 3,
            "township_code": ["T1", "T1", "T2"],
            "township_name": ["东街街道", "东街街道", "北营镇"],
            "county_code": ["K"] * 3,
            "fibre": [True, False, True],
            "fibre_basis": ["register", "none", "register"],
            "speed_class": ["meets"] * 3,
            "meets_targets": [True, False, True],
            "tests": [5] * 3,
        }
    )
    claimed = pd.DataFrame({"村名": ["东关村", " 西关村 "], "乡镇": ["T1", "北营镇"]})
    audit = audit_claims(villages, claimed, code=None, name="村名", township="乡镇", scope="all")
    # A1 has fibre but its claim was ambiguous: it is also listed as not claimed
    assert audit.rows["status"].tolist() == ["name_ambiguous", "confirmed", "evidence_not_claimed"]
    assert "A1, A2" in audit.rows["message"].iat[0]


# --- audit files handed over ----------------------------------------------------------------


def _two_county_villages() -> pd.DataFrame:
    """Two counties, each with a township 城关镇 holding a 东关村 (as NBS townships repeat
    across counties); K2's has fibre. Medians with float error (146.27 computed as a sum)."""
    return pd.DataFrame(
        {
            "village_code": ["K1001", "K1002", "K2001"],
            "village_name": ["东关村委会", "西关村委会", "东关村委会"],
            "kind": ["village"] * 3,
            "township_code": ["K1T", "K1T", "K2T"],
            "township_name": ["城关镇"] * 3,
            "county_code": ["K1", "K1", "K2"],
            "county_name": ["甲县", "甲县", "乙县"],
            "fibre": [False, True, True],
            "fibre_basis": ["none", "register", "register"],
            "speed_class": ["below", "meets", "meets"],
            "meets_targets": [False, True, True],
            "tests": [7, 12, 9],
            "download_median_mbps": [8.0, 0.1 + 146.17, 30.0],
        }
    )


def test_audit_files_carry_the_run_and_the_list_they_were_made_from(north_run, tmp_path):
    _, run = north_run
    listed = tmp_path / "claimed.csv"
    pd.DataFrame({"village_code": ["V1", "V3", "V99"]}).to_csv(listed, index=False)
    result = invoke("-q", "audit", run, "--claimed", listed, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    # the configuration's hash computed here from the recorded parameters
    config_sha = hashlib.sha256(
        json.dumps(manifest["parameters"], sort_keys=True).encode("utf-8")).hexdigest()
    list_sha = hashlib.sha256(listed.read_bytes()).hexdigest()
    about = json.loads((tmp_path / "a" / "audit.json").read_text(encoding="utf-8"))
    assert about["config_sha256"] == config_sha
    assert about["claimed_sha256"] == list_sha
    assert about["run_created"] == manifest["created"]
    assert datetime.fromisoformat(about["audit_created"]) >= datetime.fromisoformat(
        manifest["created"])
    assert about["counts"]["unknown_code"] == 1 and about["claim"] == "fibre"
    csv_bytes = (tmp_path / "a" / "audit.csv").read_bytes()
    assert about["files"]["audit.csv"] == hashlib.sha256(csv_bytes).hexdigest()
    # the CSV stays a plain table: its header is the first line
    assert csv_bytes.decode("utf-8-sig").startswith("status,claim_row,")
    book = openpyxl.load_workbook(tmp_path / "a" / "audit.xlsx")
    assert book.sheetnames == ["about", "summary", "audit"]
    sheet = {r[0].value: r[1].value for r in book["about"].iter_rows(min_row=2)}
    assert sheet["config_sha256"] == config_sha and sheet["claimed_sha256"] == list_sha
    assert sheet["run_created"] == manifest["created"]
    assert sheet["audit_created"] == about["audit_created"]


def test_audit_numbers_are_rounded_as_the_run_tables(tmp_path):
    from ruralcov.audit import write_audit

    villages = _two_county_villages()
    assert villages["download_median_mbps"].iat[1] != 146.27  # the float error is there
    claimed = pd.DataFrame({"village_code": ["K1002", "K9999"]})  # K9999: no village, no tests
    audit = audit_claims(villages, claimed, scope="all")
    write_audit(audit, tmp_path / "a")
    rows = pd.read_csv(tmp_path / "a" / "audit.csv", encoding="utf-8-sig", dtype=str,
                       keep_default_na=False)
    assert rows["village_code"].tolist() == ["K1002", "", "K2001"]
    assert rows["tests"].tolist() == ["12", "", "9"]
    assert rows["download_median_mbps"].tolist() == ["146.27", "", "30.0"]
    sheet = openpyxl.load_workbook(tmp_path / "a" / "audit.xlsx")["audit"]
    head = [c.value for c in sheet[1]]
    first = [c.value for c in sheet[2]]
    got = first[head.index("tests")], first[head.index("download_median_mbps")]
    assert got == (12, 146.27) and isinstance(got[0], int)


def test_claimed_name_and_township_shown_for_rows_matched_by_code(north_run, tmp_path):
    _, run = north_run
    listed = tmp_path / "claimed.csv"
    pd.DataFrame({"village_code": ["V1", None], "村名": ["Nordby (ops)", "Sørby"]}).to_csv(
        listed, index=False)
    # a name column beside the codes, without a township column
    result = invoke("-q", "audit", run, "--claimed", listed, "--name", "村名",
                    "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "a" / "audit.csv", encoding="utf-8-sig", dtype=str,
                       keep_default_na=False)
    first = rows.iloc[0]
    assert (first["status"], first["village_code"], first["claimed_code"]) == (
        "confirmed", "V1", "V1")
    assert (first["claimed_name"], first["village_name"]) == ("Nordby (ops)", "Nordby")
    assert first["claimed_township"] == "" and first["township_code"] == "T1"
    # without a township column a row without a code cannot be matched by its name
    second = rows.iloc[1]
    assert (second["status"], second["claimed_name"]) == ("missing_key", "Sørby")
    assert "--township" in second["message"]


def test_county_narrows_name_matching():
    villages = _two_county_villages()
    claimed = pd.DataFrame({"村名": ["东关村"], "乡镇": ["城关镇"]})

    def statuses(**kw):
        audit = audit_claims(villages, claimed, code=None, name="村名", township="乡镇",
                             scope="county", **kw)
        return [(s, None if pd.isna(c) else c)
                for s, c in zip(audit.rows["status"], audit.rows["village_code"], strict=True)]

    # 城关镇 is a township of both counties: the name fits two villages
    assert statuses()[0] == ("name_ambiguous", None)
    # within 乙县 (by name or by code) it is K2001; K1's villages are out of scope
    assert statuses(county="乙县") == [("confirmed", "K2001")]
    assert statuses(county="K2") == [("confirmed", "K2001")]
    # within 甲县 it is K1001, which has no fibre; K1002 has fibre and was not claimed
    assert statuses(county="甲县") == [("claimed_without_evidence", "K1001"),
                                       ("evidence_not_claimed", "K1002")]
    with pytest.raises(ConfigError, match=r"--county '乙 县 x'.*no county"):
        statuses(county="乙 县 x")


def test_second_audit_into_a_folder_needs_force(north_run, tmp_path):
    _, run = north_run
    listed = tmp_path / "claimed.csv"
    pd.DataFrame({"village_code": ["V1"]}).to_csv(listed, index=False)
    args = ("audit", run, "--claimed", listed, "--out", tmp_path / "a")
    assert invoke("-q", *args).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    pd.DataFrame({"village_code": ["V3"]}).to_csv(listed, index=False)
    line = one_error_line(invoke("-q", *args))
    assert "already holds an audit" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    assert invoke("-q", *args, "--force").exit_code == 0
    rows = pd.read_csv(tmp_path / "a" / "audit.csv", encoding="utf-8-sig", dtype=str)
    assert rows["claimed_code"].iat[0] == "V3"


def test_code_column_of_names_points_to_name_matching(north_run, tmp_path):
    _, run = north_run
    listed = tmp_path / "claimed.csv"
    pd.DataFrame({"村名": ["Nordby", "Austby", "东关村"], "乡镇": ["T1", "T1", "T1"]}).to_csv(
        listed, index=False)
    line = one_error_line(invoke("-q", "audit", run, "--claimed", listed, "--code", "村名",
                                 "--out", tmp_path / "a"))
    assert "'村名'" in line and "--name 村名" in line and "--township" in line
    assert not (tmp_path / "a").exists()
    # a name among real codes: that row's message says so
    claimed = pd.DataFrame({"village_code": ["K1001", "东关村"]})
    audit = audit_claims(_two_county_villages(), claimed)
    assert audit.rows["status"].tolist()[:2] == ["claimed_without_evidence", "unknown_code"]
    assert "--name village_code" in audit.rows["message"].iat[1]


# --- diff of two runs ----------------------------------------------------------------------


def test_diff_explains_each_change(north_run, tmp_path):
    cfg_a, run_a = north_run
    folder = tmp_path / "b"
    shutil.copytree(cfg_a.parent, folder)
    cfg_b = folder / cfg_a.name
    # a new access point in V5; three more tests from a third device in V2; a correction on V3
    aps = gpd.read_file(folder / "access_points.gpkg", layer="nodes")
    new = gpd.GeoDataFrame(
        {"asset_id": ["AP-9"], "status": ["operational"]},
        geometry=[square(1, 1).centroid],
        crs=4326,
    )
    pd.concat([aps, new], ignore_index=True).to_file(folder / "access_points.gpkg", layer="nodes")
    tests = pd.read_csv(folder / "tests.csv")
    x0, y0, x1, y1 = square(1, 0).bounds  # V2
    in_v2 = tests["lon"].between(x0, x1, inclusive="neither") & tests["lat"].between(y0, y1)
    extra = tests[in_v2].head(3).assign(device="third")
    extra["lon"] = extra["lon"] + 0.00005
    pd.concat([tests, extra], ignore_index=True).to_csv(folder / "tests.csv", index=False)
    with_ledger(
        cfg_b,
        "village_code,field,value,reason,evidence,author,date\n"
        "V3,fibre,yes,asset_verified_on_site,photo,Kari,2026-05-02\n",
    )
    run_b = tmp_path / "run_b"
    assert invoke("-q", "run", cfg_b, "--out", run_b, "--no-maps").exit_code == 0
    result = invoke("diff", run_a, run_b, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "gained fibre 2" in result.stdout
    table = pd.read_csv(tmp_path / "d" / "diff_villages.csv", encoding="utf-8-sig", dtype=str)
    why = table.set_index("village_code")["why"]
    assert sorted(why.index) == ["V2", "V3", "V5"]
    assert why["V5"].startswith("new_asset: AP-9")
    assert why["V2"].startswith("more_tests: 6 -> 9")
    assert why["V3"].startswith("correction: fibre = yes")
    county = pd.read_csv(tmp_path / "d" / "diff_county.csv", encoding="utf-8-sig", dtype=str)
    assert county[["code", "fibre_villages_a", "fibre_villages_b"]].values.tolist() == [
        ["K1", "3", "5"]
    ]


# --- verify --------------------------------------------------------------------------------


def test_verify_passes_then_catches_tampering(north_run, tmp_path):
    cfg, base = north_run
    run = tmp_path / "run"
    shutil.copytree(base, run)
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert "0 differences" in result.stdout
    path = run / "tables" / "villages.csv"
    path.write_bytes(path.read_bytes().replace(b"Nordby", b"Nordbx"))
    result = invoke("verify", run, "--no-rerun")
    assert result.exit_code == 1
    assert "changed  output   tables/villages.csv" in result.stdout
    assert "1 differences" in result.stdout


def test_verify_reports_changed_inputs_and_results(tmp_path):
    cfg = write_north_world(tmp_path / "in")
    run = tmp_path / "run"
    assert invoke("-q", "run", cfg, "--out", run, "--no-maps").exit_code == 0
    tests = pd.read_csv(cfg.parent / "tests.csv")
    tests.loc[tests["down"].isin([4, 6, 8]), "down"] = 20  # V3's median rises from 8 to 20
    tests.to_csv(cfg.parent / "tests.csv", index=False)
    result = invoke("verify", run)
    assert result.exit_code == 1
    out = result.stdout
    assert "changed  input" in out and "tests.csv" in out
    assert "differs  rerun    tables/villages.csv" in out
    assert "speed_meets: 2 -> 3" in out


def test_commands_have_examples():
    for command in ("audit", "diff", "verify"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_claimed_codes_changed_by_a_spreadsheet_stop_the_audit(tmp_path):
    from ruralcov.audit import read_claimed

    villages = pd.DataFrame(
        {"village_code": ["140105001001"], "village_name": ["东关村委会"], "kind": ["village"],
         "township_code": ["140105001"], "county_code": ["140105"], "fibre": [True],
         "fibre_basis": ["register"], "speed_class": ["meets"], "meets_targets": [True],
         "tests": [5]}
    )
    claimed = pd.DataFrame({"village_code": ["140105001001", "1.40105E+11"]})
    with pytest.raises(SchemaError, match=r"claimed list \(ops.csv\): column 'village_code' .*"
                                          r"row 2 '1.40105E\+11'.*format the column as text"):
        audit_claims(villages, claimed, source="claimed list (ops.csv)")
    # a named sheet is read through the same reader: a column named twice is refused too
    book = openpyxl.Workbook()
    book.active.title = "fibre"
    book.active.append(["village_code", "village_code"])
    book.active.append(["140105001001", "140105001002"])
    book.save(tmp_path / "ops.xlsx")
    with pytest.raises(SchemaError, match="'village_code' twice"):
        read_claimed(tmp_path / "ops.xlsx", sheet="fibre")


def copied(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def forge_manifest(run: Path, change) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def rehash(run: Path, rel: str) -> None:
    """What a forger does after editing an output: put its new hash into the manifest."""
    digest = hashlib.sha256((run / rel).read_bytes()).hexdigest()
    forge_manifest(run, lambda m: m["outputs"].__setitem__(rel, digest))


def differences(run: Path, *args: str) -> list[str]:
    result = invoke("verify", run, *args)
    assert result.exit_code == 1, result.output
    return result.stdout.splitlines()


def has(lines: list[str], start: str, *words: str) -> bool:
    return any(line.startswith(start) and all(w in line for w in words) for line in lines)


def test_verify_catches_forged_input_counts(north_run, tmp_path):
    _, base = north_run
    run = copied(base, tmp_path)

    def forge(m):  # the negative speed row "used" after all; the counts still balance
        speed = next(i for i in m["inputs"] if i["layer"] == "speed")
        speed["rows_used"] += 1
        speed["rows_dropped"] -= 1
        speed["dropped"]["negative_speed"] -= 1

    forge_manifest(run, forge)
    lines = differences(run)
    # by construction: 29 of the speed file's rows are used, 1 dropped as negative
    assert has(lines, "differs  manifest manifest.json", "inputs[speed].rows_used: 30 -> 29",
               "inputs[speed].dropped.negative_speed: 0 -> 1"), lines
    assert lines[-1].endswith(" 1 differences")


def test_verify_catches_an_edited_output_taken_off_the_manifest(north_run, tmp_path):
    _, base = north_run
    run = copied(base, tmp_path)
    path = run / "tables" / "villages.csv"
    path.write_bytes(path.read_bytes().replace(b"Nordby", b"Nordbx"))
    forge_manifest(run, lambda m: m["outputs"].pop("tables/villages.csv"))
    lines = differences(run)
    assert has(lines, "unlisted output   tables/villages.csv", "not among the manifest's outputs")
    assert has(lines, "differs  rerun    tables/villages.csv")
    assert has(lines, "missing  rerun    tables/villages.csv", "do not list it")
    assert has(differences(run, "--no-rerun"), "unlisted output   tables/villages.csv")


def test_verify_catches_rehashed_report_and_workbook(north_run, tmp_path):
    _, base = north_run
    run = copied(base, tmp_path)
    page = run / "report.html"
    text = page.read_text(encoding="utf-8")
    card = '<div class="value bad">50.00 %</div>'  # by construction: 3 of 6 villages
    assert card in text
    page.write_text(text.replace(card, card.replace("50.00", "99.00")), encoding="utf-8")
    rehash(run, "report.html")
    book = openpyxl.load_workbook(run / "report.xlsx")
    about = book["about"]
    row = next(r for r in about.iter_rows() if r[0].value == "fibre_villages")
    assert row[1].value == 3
    row[1].value = 6
    book.save(run / "report.xlsx")
    rehash(run, "report.xlsx")
    lines = differences(run)
    assert has(lines, "differs  rerun    report.html", "99.00 %", "50.00 %"), lines
    assert has(lines, "differs  rerun    report.xlsx"), lines
    assert lines[-1].endswith(" 2 differences")


def test_verify_recomputes_the_assets_the_maps_and_the_plan_read(north_run, tmp_path):
    """assets.parquet is what ``ruralcov map`` and ``plan`` grow from: a planned access point
    made operational there, and rehashed, is a difference of the recomputation."""
    _, base = north_run
    run = copied(base, tmp_path)
    path = run / "assets.parquet"
    assets = gpd.read_parquet(path)
    assert assets.loc[assets["asset_id"] == "AP-3", "operational"].tolist() == [False]
    planned = assets["asset_id"] == "AP-3"
    assets.loc[planned, "status"] = "operational"
    assets.loc[planned, "operational"] = True
    assets.to_parquet(path, index=False)
    rehash(run, "assets.parquet")
    lines = differences(run)
    assert has(lines, "differs  rerun    assets.parquet"), lines
    assert lines[-1].endswith(" 1 differences")


def test_verify_passes_an_honest_run_with_later_additions(north_run, tmp_path):
    """What other commands and programs add to a run folder is not a difference: a plan, maps
    drawn later, audits, diffs, Excel's lock file; nor the demo's inputs inside the folder."""
    _, base = north_run
    run = tmp_path / "run"
    cfg = write_north_world(run / "inputs")  # the inputs inside the run folder, as the demo's
    write_run(analyse(load_config(cfg)), run, maps=False)
    assert (run / "inputs" / "tests.csv").is_file()
    assert invoke("-q", "plan", run, "--no-maps").exit_code == 0
    assert invoke("-q", "map", run).exit_code == 0
    assert invoke("-q", "diff", base, run).exit_code == 0
    (tmp_path / "claimed.csv").write_text("village_code\nV1\n", encoding="utf-8")
    assert invoke("-q", "audit", run, "--claimed", tmp_path / "claimed.csv").exit_code == 0
    (run / "~$report.xlsx").write_bytes(b"lock")
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith(" 0 differences")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<section id="plan">' in page and "<figure>" not in page  # maps came later


def test_verify_accepts_runs_written_before_it_recomputed_everything(tmp_path):
    """Runs made before report.xlsx carried the manifest's time, and before config.toml named
    the inputs inside the run folder relatively (the demo's), differ in nothing else: no
    difference. A config.toml that says something else gives another report and manifest."""
    from ruralcov.report import write_xlsx

    run = tmp_path / "run"
    cfg = write_north_world(run / "inputs")
    result = analyse(load_config(cfg))
    write_run(result, run, maps=False)
    write_xlsx(result, run / "report.xlsx", created="2020-01-02T03:04:05+00:00")
    rehash(run, "report.xlsx")
    text = (run / "config.toml").read_text(encoding="utf-8")
    assert 'path = "inputs/tests.csv"' in text
    absolute = text.replace('"inputs/', f'"{(run / "inputs").resolve().as_posix()}/')
    (run / "config.toml").write_text(absolute, encoding="utf-8")
    rehash(run, "config.toml")
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    (run / "config.toml").write_text(absolute.replace("Hand-made test world.", "Census 2026."),
                                     encoding="utf-8")
    rehash(run, "config.toml")
    lines = differences(run)  # recomputed from it: the report and manifest say otherwise
    assert has(lines, "differs  rerun    report.html", "Census 2026.")
    assert has(lines, "differs  manifest manifest.json",
               "provenance: Hand-made test world. -> Census 2026.")


def test_verify_notes_other_versions_without_failing(north_run, tmp_path):
    _, base = north_run
    run = copied(base, tmp_path)
    forge_manifest(run, lambda m: m["versions"].__setitem__("pandas", "0.1"))
    result = invoke("verify", run)
    assert result.exit_code == 0, result.output
    assert has(result.stdout.splitlines(), "note     manifest manifest.json",
               "recomputed with other versions: versions.pandas: 0.1 -> ")
