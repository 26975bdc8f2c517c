from datetime import UTC, datetime

from services.dispatcher.core.snapshot import Snapshot
from shared.battery_limits import BmsLimits
from shared.examples import EXAMPLES
from shared.messages import BatteryLimits, BatteryState, InverterState


def test_cold_battery_may_not_charge_for_the_dispatcher_either() -> None:
    """The dispatcher and the inverter bridge read the BMS the same way: below 0 degC, no charge."""
    battery = EXAMPLES[BatteryState].model_copy(
        update={"temp_min_c": -3.0, "limits": BatteryLimits(charge_current_a=50, discharge_current_a=50)}
    )
    assert isinstance(battery, BatteryState)
    limits = BmsLimits.from_state(battery)
    assert limits.cap_w(charging=True) == 0.0 and "below 0 degC" in (limits.blocked(charging=True) or "")
    assert limits.cap_w(charging=False) == 50 * battery.voltage_v
    inverter = EXAMPLES[InverterState]
    assert isinstance(inverter, InverterState)
    snap = Snapshot.from_messages(datetime.now(UTC), inverter, battery=battery)
    assert snap.charge_limit_w == 0.0 and snap.discharge_limit_w == limits.cap_w(charging=False)
