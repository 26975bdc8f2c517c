"""``ongrid backtest``: replay load and PV data through the dispatcher's own plan/control core."""

from .cli import main

__all__ = ["main"]
