from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Broker, running_broker


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Broker]:
    """One private broker for the whole session; tests isolate themselves by site name."""
    with running_broker() as broker:
        yield broker


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker of this test's own: for tests that stop or restart it, and for a whole fleet's run
    (its retained state must not reach another test's fleet)."""
    with running_broker() as broker:
        yield broker
