"""The recorder against an InfluxDB 1.x with authentication on (a real influxd, Debian's 1.6).

InfluxDB 1.x takes credentials as HTTP Basic auth or as ``?u=&p=`` query parameters
(https://docs.influxdata.com/influxdb/v1/administration/authentication_and_authorization/).
The recorder uses Basic auth: urllib3 logs the request URL on every retry, and a password in
the query string ended up in the recorder's warnings.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import urllib3
from pydantic import SecretStr

from services.devtools.devdb import influxd_available, running_influxd
from services.recorder.backends.base import BackendDown
from services.recorder.backends.influx import InfluxQLReader, InfluxV1Writer
from services.recorder.rows import Row, ns
from shared.config.recorder import InfluxConfig
from shared.ports import free_port

pytestmark = pytest.mark.skipif(not influxd_available(), reason="influxd is not installed (apt-get install influxdb)")

SECRET = "s3cret-never-logged"


def _row(power_w: float) -> Row:
    return Row.make("inverter", {"site": "auth", "device": "inv1"}, {"power_w": power_w}, ns(datetime.now(UTC)))


def test_writes_and_reads_with_basic_auth_and_wrong_password_is_refused() -> None:
    with running_influxd(auth=True) as server:
        admin = urllib3.PoolManager()
        create = f"CREATE USER ongrid WITH PASSWORD '{SECRET}' WITH ALL PRIVILEGES"
        created = admin.request("POST", f"{server.url}/query", fields={"q": create}, encode_multipart=False)
        assert created.status == 200, created.data

        good = InfluxConfig(url=server.url, database="ongrid", username="ongrid", password=SecretStr(SECRET))
        writer = InfluxV1Writer(good)
        writer.write([_row(123.0)])
        reader = InfluxQLReader(good)
        series = reader.query('SELECT "power_w" FROM "inverter"')
        assert series and series[0]["values"][0][1] == 123.0

        show = {"db": "ongrid", "q": "SHOW MEASUREMENTS"}
        anonymous = admin.request("GET", f"{server.url}/query", fields=show)
        assert anonymous.status == 401  # auth is really on: without credentials nothing is answered

        wrong = InfluxConfig(url=server.url, database="ongrid", username="ongrid", password=SecretStr("wrong"))
        with pytest.raises(BackendDown, match="401"):
            InfluxV1Writer(wrong).write([_row(1.0)])
        writer.close()


def test_retry_warnings_never_carry_the_password(caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: urllib3 retries and logs each try
    cfg = InfluxConfig(
        url=closed, database="ongrid", username="ongrid", password=SecretStr(SECRET), retries=2, timeout_s=2
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendDown) as raised:
        InfluxV1Writer(cfg).write([_row(1.0)])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Retrying" in logged  # the warnings that used to carry ?u=..&p=.. were emitted
    assert SECRET not in logged and SECRET not in str(raised.value)
