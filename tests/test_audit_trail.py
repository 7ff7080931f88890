"""Audit trail: safe outputs, determinism, corrections, claimed-list audit, run diff, verify."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from ruralcov.audit import audit_claims, read_run
from ruralcov.cli import cli
from ruralcov.config import CorrectionsConfig
from ruralcov.corrections import check_ledger, read_ledger
from ruralcov.errors import OutputExistsError, SchemaError
from ruralcov.report import write_run
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
        ["V3", "fibre", "False", "True"],
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
    villages, _ = read_run(run)
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
