"""Test helpers: free ports and a private Mosquitto broker the tests start and stop themselves."""

from services.devtools.localbroker import MOSQUITTO, Broker, free_port, running_broker, wait_for_port

__all__ = ["MOSQUITTO", "Broker", "free_port", "running_broker", "wait_for_port"]
