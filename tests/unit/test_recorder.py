"""Recorder write path without a broker: storage layout, row identity, spool, replay, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.recorder import points
from services.recorder.backends import BackendDown, BackendRejected, SqliteStore
from services.recorder.pipeline import Recorder
from services.recorder.points import _direct, flatten, to_rows
from services.recorder.rows import Row, RowError, from_ns, ns
from services.recorder.spool import Spool
from shared import messages as m
from shared.contract import channels
from shared.examples import EXAMPLES
from shared.topics import Kind, Stream, TopicParts
from tests.support.influx_reference import influxdb_client_line

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def parts(kind: Kind = Kind.METER, device: str = "grid", stream: Stream = Stream.STATE) -> TopicParts:
    return TopicParts("home", kind, device, stream)


def meter(power: float, ts: datetime = T0) -> m.MeterState:
    return m.MeterState(
        ts=ts, device="grid", model="sdm120", role=m.MeterRole.GRID, power_w=power, voltage_v=240.0,
        current_a=1.0, frequency_hz=50.0, import_energy_wh=1.0, export_energy_wh=0.0,
    )  # fmt: skip


def test_every_contract_model_has_a_storage_layout() -> None:
    kinds = {model: (kind, stream) for kind, stream, model in channels()}
    for model, example in EXAMPLES.items():
        kind, stream = kinds[model]
        rows = to_rows(TopicParts("home", kind, "dev1", stream), example)
        assert rows, model.__name__
        for row in rows:
            assert dict(row.tags)["site"] == "home"
            assert row.to_line().startswith(row.measurement + ",")


def test_one_pass_rows_equal_the_general_path_for_every_contract_model() -> None:
    # points._direct (a plan per model class) must store exactly what flatten + Row.make store,
    # byte for byte; models it does not cover (nested, times) fall back to that path.
    tags = {"site": "home", "kind": "k", "device": "d", "role": None}
    for model, example in EXAMPLES.items():
        for skip in (frozenset(), frozenset(list(type(example).model_fields)[3:5])):
            direct = _direct("m", tags, example, skip, 7)
            general = Row.make("m", tags, flatten(example, skip=skip), 7)
            assert (direct.line, direct.fields) == (general.line, general.fields), model.__name__


names_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    # 0-100 fits every number's bounds (a state of charge in %), whole and fractional, tiny and
    # negative zero included; None where the contract allows it.
    numbers=st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.integers(0, 10**6)), min_size=30, max_size=30),
    faults=st.lists(names_text, max_size=4),
    model=names_text,
    state=st.sampled_from(m.RunningState),
)
@settings(max_examples=300, deadline=None)
def test_one_pass_inverter_rows_are_the_bytes_influxdb_client_writes(
    numbers: list[tuple[float, bool, int]], faults: list[str], model: str, state: m.RunningState
) -> None:
    # The recorder's hottest payload through the one-pass plan, against flatten + Row.make and
    # against influxdb-client's own encoder.
    fields = m.InverterState.model_fields
    data = EXAMPLES[m.InverterState].model_dump()
    numeric = [name for name, value in data.items() if value is None or type(value) in (float, int)][1:]  # not v
    for name, (number, null, whole) in zip(numeric, numbers, strict=False):
        if null and not fields[name].is_required():
            data[name] = None
        else:
            data[name] = whole if name == "battery_cycles" else number
    data.update(faults=faults, model=model, running_state=state)
    message = m.InverterState.model_validate(data)
    tags = {"site": "home", "kind": "inverter", "device": "inv1", "model": model}
    direct = _direct("inverter", tags, message, frozenset({"model"}), 11)
    general = Row.make("inverter", tags, flatten(message, skip={"model"}), 11)
    assert (direct.line, direct.fields) == (general.line, general.fields)
    assert direct.line == influxdb_client_line(direct)


@given(
    backend=names_text,
    error=st.one_of(st.none(), names_text, st.sampled_from(['a"b', "c\\d", "v1.0,v2", "x.0", "{0}", "1.0"])),
    counts=st.lists(st.integers(0, 2**62), min_size=6, max_size=6),
    ok=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_templated_rows_are_the_loops_bytes_with_strings_bools_and_ints(
    backend: str, error: str | None, counts: list[int], ok: bool
) -> None:
    # A payload kind with string, bool and int fields through points._templated (one str.format
    # per row), against flatten + Row.make and influxdb-client; strings it cannot write as they
    # are (a quote, a backslash, ".0,") take the loop, which must give the same bytes.
    message = m.RecorderStatus(
        ts=T0, recorder="rec1", backend=backend, database_ok=ok, last_error=error,
        **dict(zip(["points_written", "points_spooled", "backlog_points", "backlog_bytes", "points_lost",
                    "points_rejected"], counts, strict=True)),
    )  # fmt: skip
    tags = {"site": "home", "kind": "recorder", "device": "rec1", "role": None}
    direct = _direct("recorder", tags, message, frozenset(), 5)
    general = Row.make("recorder", tags, flatten(message), 5)
    assert (direct.line, direct.fields) == (general.line, general.fields)
    assert direct.line == influxdb_client_line(direct)


def test_the_template_writes_the_common_rows_and_leaves_the_rest_to_the_loop() -> None:
    # The fast path must be the one taken for a plain state (else the tests above prove only the
    # loop), and must refuse what it cannot write byte for byte.
    skip = frozenset({"model"})
    tags = {"site": "home", "kind": "inverter", "device": "inv1", "model": "x"}
    plain = EXAMPLES[m.InverterState].model_copy(update={"faults": ()})

    def templated(message: m.InverterState) -> Row | None:
        getter = points._getter(m.InverterState, skip)
        assert getter is not None
        return points._templated("inverter", tags, message, skip, 9, getter(message.__dict__))

    row = templated(plain)
    assert row is not None
    assert row.line == Row.make("inverter", tags, flatten(plain, skip=skip), 9).line
    assert row.fields["faults_count"] == 0 and row.fields["battery_soc_pct"] == plain.battery_soc_pct
    assert templated(plain.model_copy(update={"faults": ("over_temp",)})) is None  # names to join
    hot = plain.model_copy(update={"battery_temp_c": float("inf")})  # not through validation
    assert templated(hot) is None
    with pytest.raises(RowError, match=r"inverter\.battery_temp_c: inf is not a finite number"):
        _direct("inverter", tags, hot, skip, 9)


def test_meter_row_tags_fields_and_time() -> None:
    [row] = to_rows(parts(), meter(-35.5))
    tags = dict(row.tags)
    assert tags == {"site": "home", "kind": "meter", "device": "grid", "role": "grid", "model": "sdm120"}
    assert row.fields["power_w"] == -35.5
    assert row.fields["below_accurate_range"] == 0  # booleans as integers
    assert ns(T0) <= row.ts_ns < ns(T0) + 1_000_000  # the read time, within its millisecond


def test_battery_modules_and_cells_are_their_own_measurements() -> None:
    rows = to_rows(parts(Kind.BMS, "battery1"), EXAMPLES[m.BatteryState])
    by = {r.measurement: r for r in rows}
    assert set(by) == {"battery", "battery_module", "battery_cell"}
    cells = [r for r in rows if r.measurement == "battery_cell"]
    assert {(dict(c.tags)["module"], dict(c.tags)["cell"]) for c in cells}
    assert "modules" not in by["battery"].fields


def test_same_payload_same_point_different_payload_different_point() -> None:
    [a] = to_rows(parts(), meter(100.0))
    [again] = to_rows(parts(), meter(100.0))
    [b] = to_rows(parts(), meter(101.0))
    assert a.key == again.key  # a redelivery overwrites
    assert a.key != b.key  # two readings in one millisecond both survive


def test_plan_steps_keyed_by_step_start_so_the_latest_plan_wins() -> None:
    rows = to_rows(parts(Kind.DISPATCHER, "main", Stream.PLAN), EXAMPLES[m.Plan])
    steps = [r for r in rows if r.measurement == "plan_step"]
    plan = EXAMPLES[m.Plan]
    assert isinstance(plan, m.Plan)
    assert [s.ts_ns for s in steps] == [ns(step.start) for step in plan.steps]


def test_row_refuses_non_finite_and_empty() -> None:
    with pytest.raises(RowError, match=r"meter\.power_w: nan"):
        Row.make("meter", {}, {"power_w": float("nan")}, 0)
    with pytest.raises(RowError, match="at least one field"):
        Row.make("meter", {"site": "x"}, {"power_w": None}, 0)


@given(
    fields=st.dictionaries(
        st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8),
        st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
        min_size=1,
        max_size=6,
    ),
    tags=st.dictionaries(st.sampled_from(["site", "device", "role"]), st.text(min_size=1, max_size=10), max_size=3),
    ts=st.integers(0, 2**62),
)
@settings(max_examples=200, deadline=None)
def test_row_json_round_trip(fields: dict[str, float | int | str], tags: dict[str, str], ts: int) -> None:
    row = Row.make("m", tags, fields, ts)
    back = Row.from_json(row.to_json())
    assert back == row and back.key == row.key
    assert all(type(back.fields[k]) is type(v) for k, v in row.fields.items())  # 5 stays int, 5.0 float


def test_ns_is_exact() -> None:
    when = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
    assert ns(when) == 1773144000123456000
    assert from_ns(ns(when)) == when


# -- spool ------------------------------------------------------------------------------------


def rows(n: int, first: int = 0) -> list[Row]:
    return [Row.make("meter", {"site": "home"}, {"power_w": float(i)}, ns(T0) + i) for i in range(first, first + n)]


def test_spool_survives_a_restart_and_replays_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    spool.append(rows(3))
    spool.seal()
    spool.append(rows(2, 3))  # left open, as a crash would leave it
    again = Spool(tmp_path, 10**9)
    assert again.backlog_rows == 5
    replayed = [r for seg in again.segments for r in again.read(seg)]
    assert [r.fields["power_w"] for r in replayed] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_spool_skips_a_torn_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    spool.append(rows(2))
    segment = spool.seal()
    assert segment is not None
    with segment.path.open("a") as handle:
        handle.write('{"m":"meter","t":{"site"')  # power lost mid-line
    again = Spool(tmp_path, 10**9)
    assert len(again.read(again.segments[0])) == 2
    assert again.stats.torn_lines == 1


def test_spool_bound_drops_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2000)
    for k in range(10):
        spool.append(rows(10, 10 * k))
        spool.seal()
    assert spool.backlog_bytes <= 2000 + 1000
    assert spool.stats.dropped_rows > 0
    kept = [r.fields["power_w"] for seg in spool.segments for r in spool.read(seg)]
    assert kept[-1] == 99.0 and kept[0] > 0.0  # the newest kept, the oldest gone


# -- pipeline -----------------------------------------------------------------------------------


class FlakyStore:
    """The real SQLite store behind a switch that makes it refuse like a database that is down."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.name = "flaky-sqlite"
        self.down = False
        self.reject = False
        self.calls = 0

    def write(self, batch: Sequence[Row]) -> None:
        self.calls += 1
        if self.down:
            raise BackendDown("database down (test)")
        if self.reject:
            raise BackendRejected("field type conflict (test)")
        self.store.write(batch)

    def close(self) -> None:
        self.store.close()


async def test_outage_spools_then_everything_arrives_once(tmp_path: Path) -> None:
    backend = FlakyStore(tmp_path / "db.sqlite")
    recorder = Recorder(backend, Spool(tmp_path / "spool", 10**9), recorder_id="r", batch_size=50,
                        flush_interval_s=0.05, retry_max_s=0.1)  # fmt: skip
    runner = asyncio.create_task(recorder.run())
    for i in range(100):
        await recorder.handle("ongrid/home/meter/grid/state", meter(float(i), T0 + timedelta(seconds=i)))
    await recorder.drained(10)
    backend.down = True
    for i in range(100, 250):
        await recorder.handle("ongrid/home/meter/grid/state", meter(float(i), T0 + timedelta(seconds=i)))
    await asyncio.sleep(0.3)
    status = recorder.status()
    assert not status.database_ok and status.backlog_points == 150 and status.last_error
    backend.down = False
    await recorder.drained(10)
    runner.cancel()
    assert backend.store.count("meter") == 250
    assert recorder.status().database_ok and recorder.status().backlog_points == 0


async def test_replaying_a_written_segment_doubles_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    spool_dir = tmp_path / "spool"
    batch = [r for i in range(40) for r in to_rows(parts(), meter(float(i), T0 + timedelta(seconds=i)))]
    Spool(spool_dir, 10**9).append(batch)  # left behind by a "crashed" recorder after its write
    store.write(batch)
    recorder = Recorder(store, Spool(spool_dir, 10**9), recorder_id="r")
    assert recorder.spool.backlog_rows == 40
    assert await recorder.flush()
    assert store.count("meter") == 40
    assert recorder.spool.backlog_rows == 0


class SlowFirstWrite:
    """The real SQLite store, its first request held back: requests in flight finish out of order,
    as InfluxDB's do when the recorder writes several segments at once."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.name = "slow-first-sqlite"
        self.calls = 0
        self.finished: list[str] = []

    def write(self, batch: Sequence[Row]) -> None:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.3)
        self.store.write(batch)
        self.finished.append(batch[0].measurement)

    def close(self) -> None:
        self.store.close()


async def test_a_point_sent_again_keeps_the_newer_values_whatever_order_writes_finish(tmp_path: Path) -> None:
    """A replanned step (same series and time) must end with the newer plan's values, even when the
    segment holding the older plan is still in flight as the newer one is written; segments with
    no point in common are still written at once."""
    plan = EXAMPLES[m.Plan]
    assert isinstance(plan, m.Plan)
    older = [r for r in to_rows(parts(Kind.DISPATCHER, "main", Stream.PLAN), plan) if r.measurement == "plan_step"]
    replanned = plan.model_copy(update={"steps": tuple(s.model_copy(update={"soc_pct_end": 77.0}) for s in plan.steps)})
    newer = [r for r in to_rows(parts(Kind.DISPATCHER, "main", Stream.PLAN), replanned) if r.measurement == "plan_step"]
    meters = [r for i in range(5) for r in to_rows(parts(), meter(float(i), T0 + timedelta(hours=5, seconds=i)))]
    spool = Spool(tmp_path / "spool", 10**9)
    for batch in (older, meters, newer):
        spool.append(batch)
        spool.seal()
    assert len(spool.segments) == 3
    backend = SlowFirstWrite(tmp_path / "db.sqlite")
    recorder = Recorder(backend, spool, recorder_id="r")
    assert await recorder.flush()
    stored = backend.store.points("plan_step", 0, 2**62)
    assert [p.fields["soc_pct_end"] for p in stored] == [77.0] * len(plan.steps)
    assert backend.store.count("meter") == 5
    assert backend.finished == ["meter", "plan_step", "plan_step"]  # the meters did not wait


async def test_rejected_rows_are_dropped_not_retried_forever(tmp_path: Path) -> None:
    backend = FlakyStore(tmp_path / "db.sqlite")
    backend.reject = True
    recorder = Recorder(backend, Spool(tmp_path / "spool", 10**9), recorder_id="r")
    await recorder.handle("ongrid/home/meter/grid/state", meter(1.0))
    assert await recorder.flush()
    assert recorder.counters.rejected == 1 and recorder.spool.backlog_rows == 0


async def test_unwritable_spool_falls_back_to_memory(tmp_path: Path) -> None:
    backend = FlakyStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool", 10**9)
    recorder = Recorder(backend, spool, recorder_id="r", memory_max_rows=3)

    def full_disk(batch: list[Row]) -> None:
        from services.recorder.spool import SpoolError

        raise SpoolError("No space left on device (test)")

    spool.append = full_disk  # type: ignore[method-assign]
    for i in range(5):
        await recorder.handle("ongrid/home/meter/grid/state", meter(float(i), T0 + timedelta(seconds=i)))
    assert recorder.counters.lost_rows == 2
    assert await recorder.flush()
    assert backend.store.count("meter") == 3


def test_spool_ignores_files_that_are_not_its_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    spool.append(rows(2))
    spool.seal()
    (tmp_path / "backup copy.seg").write_text("not ours\n")
    (tmp_path / "notes.open").write_text("")
    again = Spool(tmp_path, 10**9)
    assert again.backlog_rows == 2


async def test_one_bad_row_costs_only_itself_not_its_batch(tmp_path: Path) -> None:
    class RefusesOne(FlakyStore):
        def write(self, batch: Sequence[Row]) -> None:
            self.calls += 1
            if any(r.fields.get("power_w") == 13.0 for r in batch):
                raise BackendRejected("field type conflict on power_w (test)")
            self.store.write(batch)

    backend = RefusesOne(tmp_path / "db.sqlite")
    recorder = Recorder(backend, Spool(tmp_path / "spool", 10**9), recorder_id="r", batch_size=50)
    for i in range(40):
        await recorder.handle("ongrid/home/meter/grid/state", meter(float(i), T0 + timedelta(seconds=i)))
    assert await recorder.flush()
    assert backend.store.count("meter") == 39
    assert recorder.counters.rejected == 1 and recorder.status().points_rejected == 1
    assert recorder.spool.backlog_rows == 0


def test_a_decision_stores_its_battery_power_as_commanded_or_as_expected() -> None:
    """The "Battery setpoint vs actual" panel plots commanded power as the setpoint and, while the
    inverter runs its own self-use, the expected power on a line of its own."""
    example = EXAMPLES[m.DispatcherDecision]
    assert isinstance(example, m.DispatcherDecision)
    setpoints = example.setpoints.model_copy(update={"battery_power_w": -1500.0})
    commanded = example.model_copy(update={"commanding": True, "setpoints": setpoints})
    handed_back = example.model_copy(update={"commanding": False, "setpoints": setpoints})
    decision = parts(Kind.DISPATCHER, "main", Stream.DECISION)
    [sent] = to_rows(decision, commanded)
    [expected] = to_rows(decision, handed_back)
    assert sent.fields["commanded_battery_w"] == -1500.0 and "expected_battery_w" not in sent.fields
    assert expected.fields["expected_battery_w"] == -1500.0 and "commanded_battery_w" not in expected.fields
    assert sent.fields["setpoints_battery_power_w"] == expected.fields["setpoints_battery_power_w"] == -1500.0
