"""EMHASS's optimiser on ongrid's planning problem, for benchmarks/planner.py (a peer, never a runtime
dependency). EMHASS (https://github.com/davidusb-geek/emhass, PyPI ``emhass``) pins its own numpy
and pandas, so it lives in its own venv: ``python3 -m venv .venv-emhass && .venv-emhass/bin/pip
install -e '.[bench]'``, then ``.venv-emhass/bin/python benchmarks/planner.py``.

The same problem, read from EMHASS's own source (``emhass/optimization.py`` of 0.18.7,
https://github.com/davidusb-geek/emhass/blob/master/src/emhass/optimization.py):

* the objective is the bill: cost function ``"profit"`` (import cost minus export income,
  EMHASS's default), passed to ``Optimization(...)`` itself, whose argument wins over the
  config's ``costfun``. ``"cost"`` counts only ``unit_load_cost * P_grid_pos``: export earns
  nothing, so export above the night rate is worth nothing to it. An earlier version of this
  adapter passed ``"cost"`` there: that, not EMHASS, made its non-convex bill 46.6 % worse;
* battery power limits: EMHASS bounds the AC charge by ``battery_charge_power_max`` itself
  (``p_sto_neg >= -battery_charge_power_max``; its ``-max / eff_chg`` bound under the direction
  binary is looser) but the AC discharge by ``eff_dis * battery_discharge_power_max`` (under the
  binary), so the discharge limit is passed as ongrid's AC limit over the discharge efficiency:
  the same AC watts both ways (the earlier adapter cut EMHASS's discharge 5 % short). The SoC
  recursion is the same (in ``eff_chg * charge``, out ``discharge / eff_dis``);
* wear: ``weight_battery_charge``/``weight_battery_discharge`` are currency per kWh of AC power,
  the same as ongrid's ``cycle_cost_per_kwh / 2`` each way, so both minimise bill plus wear.
  ongrid also prices a change of battery power (``switch_cost``), which EMHASS has no term for;
* battery export: ``set_nodischarge_to_grid`` on an AC-coupled plant bounds export by the PV
  surplus (``p_grid_neg + max(0, PV - load) >= 0``), ongrid's ``battery_may_export: false``;
* directions: EMHASS has a binary for the grid (import or export) and one for the battery
  (charge or discharge) on every step, the same disjunction as ongrid's ``reference_milp``;
  the grid binary's big-M is ``maximum_power_to_grid``/``_from_grid``, set to the most the
  house could export or import (net load plus battery power), not 1 MW;
* the same end SoC as ongrid's plan (EMHASS keeps it through a penalty 100x any tariff), the
  same SoC band (reserve to ceiling); HiGHS through CVXPY with EMHASS's own defaults for the
  MIP gap (``lp_solver_mip_rel_gap`` 0.01) and time limit (``lp_solver_timeout`` 45 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from services.dispatcher.core.planner import PlanInputs

__all__ = ["EmhassPeer", "unavailable"]


def unavailable() -> str | None:
    """Why EMHASS cannot run here, or None."""
    try:
        import emhass  # noqa: F401
    except ImportError as exc:
        return f"emhass is not installed in this Python ({exc}); see benchmarks/emhass_peer.py"
    return None


class EmhassPeer:
    def __init__(self) -> None:
        import emhass
        from emhass import utils

        root = pathlib.Path(emhass.__file__).parent
        self._data = tempfile.TemporaryDirectory(prefix="ongrid-emhass-")
        self.conf: dict[str, Any] = {
            "data_path": pathlib.Path(self._data.name),
            "root_path": root,
            "defaults_path": root / "data/config_defaults.json",
            "associations_path": root / "data/associations.csv",
        }
        self.logger = logging.getLogger("emhass-peer")
        self.logger.setLevel(logging.ERROR)
        self.utils = utils

    def _confs(self, x: PlanInputs) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        b = x.battery
        net = np.asarray(x.load_w) - np.asarray(x.pv_w)
        most_export = float(-net.min()) + b.max_discharge_w + 1.0
        utils = self.utils

        async def build() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            config = await utils.build_config(self.conf, self.logger, self.conf["defaults_path"])
            empty: list[Any] = []
            config.update(
                {
                    "number_of_deferrable_loads": 0,
                    **{
                        key: empty
                        for key in (
                            "nominal_power_of_deferrable_loads",
                            "minimum_power_of_deferrable_loads",
                            "operating_hours_of_each_deferrable_load",
                            "start_timesteps_of_each_deferrable_load",
                            "end_timesteps_of_each_deferrable_load",
                            "treat_deferrable_load_as_semi_cont",
                            "set_deferrable_load_single_constant",
                            "set_deferrable_startup_penalty",
                            "cost_forecast_per_deferrable_load",
                            "deferrable_load_max_cost",
                            "set_deferrable_max_startups",
                        )
                    },
                    "set_use_battery": True,
                    "set_use_pv": True,
                    "costfun": "profit",
                    "set_total_pv_sell": False,
                    "set_nocharge_from_grid": False,
                    "set_nodischarge_to_grid": not x.battery_may_export,
                    "set_battery_dynamic": False,
                    "weight_battery_discharge": x.cycle_cost_per_kwh / 2.0,
                    "weight_battery_charge": x.cycle_cost_per_kwh / 2.0,
                    "battery_nominal_energy_capacity": b.capacity_wh,
                    # EMHASS's limits giving ongrid's AC-side ones (see the module docstring).
                    "battery_charge_power_max": b.max_charge_w,
                    "battery_discharge_power_max": b.max_discharge_w / b.discharge_efficiency,
                    "battery_charge_efficiency": b.charge_efficiency,
                    "battery_discharge_efficiency": b.discharge_efficiency,
                    "battery_minimum_state_of_charge": min(b.reserve_pct, x.soc_pct) / 100.0,
                    "battery_maximum_state_of_charge": max(b.ceiling_pct, x.soc_pct) / 100.0,
                    "maximum_power_from_grid": min(x.import_limit_w, float(net.max()) + b.max_charge_w + 1.0),
                    "maximum_power_to_grid": (
                        x.export_limit_w if x.export_limit_w is not None else most_export
                    ),
                    "optimization_time_step": x.step_s // 60,
                }
            )
            _, secrets = await utils.build_secrets(self.conf, self.logger, no_response=True)
            params = await utils.build_params(self.conf, secrets, config, self.logger)
            parsed: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = utils.get_yaml_parse(
                json.dumps(params, default=str), self.logger
            )
            return parsed

        return asyncio.run(build())

    def solve(self, x: PlanInputs, soc_final_pct: float) -> dict[str, Any]:
        """EMHASS's plan for ``x`` ending at ``soc_final_pct``: its bill, battery power, seconds."""
        from emhass.optimization import Optimization

        retrieve, optim, plant = self._confs(x)
        n = x.steps
        index = pd.date_range(x.start, periods=n, freq=f"{x.step_s}s")
        data = pd.DataFrame({"unit_load_cost": x.import_price, "unit_prod_price": x.export_price}, index=index)
        opt = Optimization(
            retrieve,
            optim,
            plant,
            "unit_load_cost",
            "unit_prod_price",
            # The constructor's cost function wins over the config's "costfun".
            "profit",
            self.conf,
            self.logger,
            opt_time_delta=max(1, n * x.step_s // 3600),
            num_timesteps=n,
        )
        began = time.perf_counter()
        out = opt.perform_optimization(
            data,
            np.asarray(x.pv_w),
            np.asarray(x.load_w),
            np.asarray(x.import_price),
            np.asarray(x.export_price),
            soc_init=x.soc_pct / 100.0,
            soc_final=soc_final_pct / 100.0,
        )
        seconds = time.perf_counter() - began
        battery = out["P_batt"].to_numpy(dtype=float)
        grid = np.asarray(x.load_w) - np.asarray(x.pv_w) - battery
        bill = float(np.sum(np.where(grid > 0, grid * x.import_price, grid * x.export_price)) * x.step_s / 3.6e6)
        wear = x.cycle_cost_per_kwh / 2.0 * float(np.abs(battery).sum()) * x.step_s / 3.6e6
        status = str(out["optim_status"].iloc[0])
        return {"bill": bill, "wear": wear, "seconds": seconds, "status": status, "battery_w": battery}
