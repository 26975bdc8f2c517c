"""Pure decision core of the dispatcher: tariff, forecasts, planner, controller, loads arbiter. No I/O."""
