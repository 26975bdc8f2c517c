"""The dispatcher: pure decision core (core/), offline replay (backtest/), and the live service."""
