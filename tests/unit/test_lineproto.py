"""The recorder's line protocol against influxdb-client's ``Point`` (not written by this project):
the same rows must give the same bytes, and every line must read back as the row it came from."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.recorder.lineproto import LineError, parse_one
from services.recorder.rows import Row
from shared.messages import EventLevel, RunningState
from tests.support.influx_reference import influxdb_client_line

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.booleans(),
    st.sampled_from([RunningState.CHARGING, EventLevel.WARNING]),  # StrEnums are stored as their value
)
rows = st.builds(
    Row.make,
    measurement=names,
    tags=st.dictionaries(names, names, max_size=5),
    fields=st.dictionaries(names, values, min_size=1, max_size=8),
    ts_ns=st.integers(0, 2**62),
)


@given(rows)
@settings(max_examples=500, deadline=None)
def test_same_bytes_as_influxdb_client_point(row: Row) -> None:
    assert row.line == influxdb_client_line(row)


@given(rows)
@settings(max_examples=500, deadline=None)
def test_every_line_reads_back_as_its_row(row: Row) -> None:
    text = row.line + "\n"
    back, after = Row.from_line(text)
    assert back == row and after == len(text)
    assert all(type(back.fields[k]) is type(v) for k, v in row.fields.items())  # 5 stays int, 5.0 float
    assert back.line == row.line


@given(st.lists(rows, min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_lines_follow_each_other_even_with_newlines_in_strings(batch: list[Row]) -> None:
    text = "".join(row.line + "\n" for row in batch)
    pos, back = 0, []
    while pos < len(text):
        row, pos = Row.from_line(text, pos)
        back.append(row)
    assert back == batch


def test_names_line_protocol_cannot_carry_are_stored_as_what_the_database_keeps() -> None:
    row = Row.make("m", {"model": "a\\b\nc"}, {"x": 1.0}, 5)
    assert row.tags == (("model", "a/b c"),)
    assert row.line == r"m,model=a/b\ c x=1 5"


def test_a_torn_line_is_an_error_not_a_row() -> None:
    line = Row.make("m", {"site": "a"}, {"s": "text", "x": 1.5}, 5).line
    for cut in (3, len(line) // 2, len(line) - 1, len(line)):
        try:
            parse_one(line[:cut])
        except LineError:
            continue
        raise AssertionError(f"torn at {cut} read as a row")
