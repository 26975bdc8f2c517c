"""The topic fuzzer runs against the fault suite's fleet (one fleet per session for both)."""

from tests.faults.conftest import fault_fleet, fleet

__all__ = ["fault_fleet", "fleet"]
