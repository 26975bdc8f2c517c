"""One fleet for the whole fault suite, and a check that it is healthy before each test
(the fixtures live in tests/support/fault_fleet.py, shared with the topic fuzzer)."""

from tests.support.fault_fleet import fault_fleet, fleet

__all__ = ["fault_fleet", "fleet"]
