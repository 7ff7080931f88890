"""Register presets and the forms in which codes and statuses are compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ruralcov.errors import SchemaError
from ruralcov.schema import read_codes, register_code_length, status_key


@pytest.mark.parametrize(
    "text",
    ["In Service", "in-service", "ＩＮ＿ＳＥＲＶＩＣＥ", " in_service ", "IN  SERVICE",
     "in\u3000service", "in - service", "In＿Service"],
)
def test_status_spellings_share_one_key(text):
    assert status_key(text) == "in_service"


def test_blank_status_has_no_key():
    assert [status_key(v) for v in ("", "  ", "\u3000", "-", None, np.nan, pd.NA)] == [None] * 7


def read(values, **kw):
    return read_codes(pd.Series(values), source="register (r.csv)", column="code", **kw)


def test_exact_float_and_integer_codes_become_integer_text():
    # GeoPackage / Parquet numeric columns; whole floats below 2**53 are exact
    assert read([140105001001.0, np.nan, 2.0**53 - 1]).tolist() == [
        "140105001001", None, "9007199254740991"]
    big = pd.Series([140105001001001001], dtype="int64")  # above 2**53: ints stay exact
    assert read(big).tolist() == ["140105001001001001"]
    assert read(pd.Series([7, None], dtype="Int64")).tolist() == ["7", None]


@pytest.mark.parametrize(
    ("values", "row", "words"),
    [
        ([140105001001.0, 140105001001.5], 2, "not an exact whole number"),
        ([2.0**53 + 2], 1, "not an exact whole number"),
        ([np.inf], 1, "not an exact whole number"),
    ],
)
def test_floats_that_are_no_code_are_errors(values, row, words):
    with pytest.raises(SchemaError) as err:
        read(pd.Series(values, dtype="float64"))
    message = str(err.value)
    assert f"row {row} " in message and words in message and "r.csv" in message
    assert "'code'" in message and "store the codes as text" in message


@pytest.mark.parametrize(
    ("text", "why"),
    [("1.40121E+11", "scientific notation"), ("1.4e11", "scientific notation"),
     ("1.4E-02", "scientific notation"), ("140121000000.0", "'.0'"), ("140121000000.00", "'.0'")],
)
def test_spreadsheet_text_is_an_error(text, why):
    with pytest.raises(SchemaError) as err:
        read(["140105001001", f" {text} "])
    message = str(err.value)
    assert "row 2" in message and text in message and why in message
    assert "format the column as text in the spreadsheet and export again" in message


def test_codes_that_only_look_numeric_are_kept():
    # letters and exponents that Excel never writes, and a dotted scheme whose '.0' is a code
    assert read(["A1E5", "12E4", "V1.0", "1.0", "1.1", "1.10"]).tolist() == [
        "A1E5", "12E4", "V1.0", "1.0", "1.1", "1.10"]


def test_short_codes_are_errors_only_against_the_register_length():
    assert read(["14010500200", "X1"]).tolist() == ["14010500200", "X1"]
    assert read(["1401050020031", "14010500200X"], length=12).tolist() == [
        "1401050020031", "14010500200X"]  # longer or not digits: recorded as bad_code later
    with pytest.raises(SchemaError, match="row 2 '14010500200'.*fewer digits than the 12"):
        read(["140105002001", "14010500200"], length=12)


@pytest.mark.parametrize(
    ("codes", "length"),
    [
        ([f"{i:05d}" for i in range(1, 10)] + ["123"], 5),  # 9 of 10 are 5 digits: 90 %
        ([f"{i:05d}" for i in range(1, 9)] + ["123", "4567"], None),  # 80 %: no rule
        (["V1", "V2", "V3"], None),
        ([f"{i:05d}" for i in range(1, 10)] + ["K1"], 5),
        ([], None),
    ],
)
def test_generic_register_length_needs_a_clear_majority(codes, length):
    assert register_code_length(pd.Series(codes, dtype=object), preset="generic") == length
    assert register_code_length(pd.Series(codes, dtype=object), preset="cn-nbs") == 12


def test_numbers_among_text_cells_are_read_as_numbers():
    mixed = pd.Series(["140105001001", 140105001002.0, 140105001003], dtype=object)
    assert read(mixed).tolist() == ["140105001001", "140105001002", "140105001003"]
    with pytest.raises(SchemaError, match=r"stored as numbers, e\.g\. row 2 '1\.5'"):
        read(pd.Series(["140105001001", 1.5], dtype=object))


def test_the_real_register_reads_and_its_excel_copy_stops():
    from pathlib import Path

    from ruralcov.schema import apply_register

    data = Path(__file__).parents[1] / "data"
    reg = pd.read_csv(data / "shanxi_villages.csv", dtype=str, keep_default_na=False)
    std = apply_register(reg, preset="cn-nbs", code="code", name="name",
                         layer="villages (shanxi_villages.csv)")
    assert std["village_code"].tolist() == reg["code"].tolist()
    for name in ("townships", "counties", "cities", "province"):  # the level-name tables
        table = pd.read_csv(data / f"shanxi_{name}.csv", dtype=str)
        got = read_codes(table["code"], source=name, column="code")
        assert got.tolist() == table["code"].tolist()
    # Saved from Excel, the 21,895 codes would collapse into a few hundred
    excel = reg.assign(code=reg["code"].map(lambda c: f"{int(c):.5E}"))
    assert excel["code"].nunique() < len(reg) // 10
    with pytest.raises(SchemaError, match=r"shanxi_villages.csv\): column 'code' holds 21895 "):
        apply_register(excel, preset="cn-nbs", code="code", name="name",
                       layer="villages (shanxi_villages.csv)")
