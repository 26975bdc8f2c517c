"""Fixtures of the image tests: the image built (``make image``'s script), the broker image, and one
deployment of the fleet from it. They run under ``make test-image`` only (which sets
ONGRID_TEST_IMAGE=1): building and running containers does not belong in ``make test``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from shared import topics
from tests.image.podman_fleet import (
    IMAGE,
    SERVICES,
    SITE,
    Fleet,
    Messages,
    base_of,
    build_broker_image,
    build_image,
    why_no_podman,
)
from tests.support import free_port

# The recorder with no influxdb settings writes the embedded store (SQLite) on its volume.
RECORDER_DROP_ENV = ("ONGRID_INFLUXDB__",)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("ONGRID_TEST_IMAGE") != "1":
        pytest.skip("the image tests build and run containers: run them with make test-image")
    reason = why_no_podman()
    if reason:
        pytest.skip(reason)
    logs = tmp_path_factory.mktemp("image-build")
    build_image(logs / "build.log")
    base = base_of(IMAGE)
    assert base, f"{IMAGE} has no base-image label: not built from deploy/Dockerfile?"
    build_broker_image(base, logs / "broker.log")
    return base


@pytest.fixture(scope="session")
def fleet(built: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    deployment = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        deployment.start_broker(free_port())
        deployment.started_at = time.monotonic()
        for name in SERVICES:
            deployment.start_service(name, RECORDER_DROP_ENV if name == "recorder" else ())
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="session")
def bus(fleet: Fleet) -> Iterator[Messages]:
    """Home Assistant's user: reads ongrid/#, may publish a mode request."""
    client = Messages(fleet.broker_port, "homeassistant", fleet.password("homeassistant"), topics.everything(SITE))
    try:
        yield client
    finally:
        client.close()
