"""The topic fuzzer runs against the fault suite's fleet (one fleet per session for both)."""

from tests.support.fault_fleet import fault_fleet, fleet

__all__ = ["fault_fleet", "fleet"]
