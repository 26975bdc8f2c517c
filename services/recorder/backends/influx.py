"""InfluxDB: v1 ``/write`` with the rows' line protocol; the v2 write API through influxdb-client
(synchronous per batch, HTTP retries by urllib3); reads in InfluxQL.

Both send each row's ``line`` (services/recorder/lineproto.py: the bytes influxdb-client's
``Point`` would write, made once per row instead of a ``Point`` object per row, which was the
largest cost in the recorder's profile).

Why synchronous writes under our own batching rather than influxdb-client's background batching
``WriteApi``: the recorder may delete a spool segment only once the database has acknowledged
*those* rows. The background batcher regroups points and reports failures by callback, so the
recorder could not tell which spooled rows are safe. One synchronous request per spool segment
(``recorder.batch_size`` rows) gives the same batching with an exact acknowledgement.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from shared.config import InfluxConfig

from ..rows import Row
from ..views import Query, influxql
from .base import BackendDown, BackendError, BackendRejected, Series, StoredPoint

_RETRY_STATUS = (429, 500, 502, 503, 504)


def _retry(cfg: InfluxConfig) -> urllib3.Retry:
    return urllib3.Retry(
        total=cfg.retries,
        connect=cfg.retries,
        read=cfg.retries,
        status=cfg.retries,
        backoff_factor=0.2,
        status_forcelist=_RETRY_STATUS,
        allowed_methods=None,  # POST /write is idempotent for us: same series+time overwrites
        raise_on_status=False,
    )


class _Http:
    """A urllib3 pool for the v1 HTTP API (``/write``, ``/query``, ``/ping``)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=4,
            timeout=urllib3.Timeout(total=cfg.timeout_s),
            retries=_retry(cfg),
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE",
        )

    def auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """(query params, headers) for the configured credentials."""
        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        if self.cfg.token is not None:
            headers["Authorization"] = f"Token {self.cfg.token.get_secret_value()}"
        elif self.cfg.username:
            # HTTP Basic, not the ?u=&p= query parameters: urllib3 logs the request URL on every
            # retry, so a password in the query string ended up in the recorder's warnings.
            password = self.cfg.password.get_secret_value() if self.cfg.password else ""
            headers.update(urllib3.util.make_headers(basic_auth=f"{self.cfg.username}:{password}"))
        return params, headers

    def request(self, method: str, path: str, params: dict[str, str], body: bytes | None = None) -> Any:
        auth_params, headers = self.auth()
        url = f"{self.base}{path}"
        fields = {**params, **auth_params}
        try:
            if method == "GET":
                return self.pool.request("GET", url, fields=fields, headers=headers)
            query = urllib.parse.urlencode(fields)
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return self.pool.request(method, f"{url}?{query}", body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise BackendDown(f"InfluxDB at {self.base} unreachable: {exc}") from exc

    def close(self) -> None:
        self.pool.clear()


def _error_text(response: Any) -> str:
    text = response.data.decode(errors="replace")[:300]
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text


class InfluxV1Writer:
    """InfluxDB 1.x: ``POST /write?db=..&rp=..&precision=ns`` with line protocol."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.http = _Http(cfg)
        self.name = "influxdb-v1"
        self._database_checked = False

    def ensure_database(self) -> None:
        """``CREATE DATABASE`` is idempotent; without admin rights it fails and the write will say why."""
        response = self.http.request("POST", "/query", {"q": f'CREATE DATABASE "{self.cfg.database}"'}, b"")
        if response.status >= 300:
            raise BackendDown(f"InfluxDB {self.http.base}: cannot create database: {_error_text(response)}")
        self._database_checked = True

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if not self._database_checked:
            try:
                self.ensure_database()
            except BackendDown:
                pass  # the write below reports the real problem
        params = {"db": self.cfg.database or "", "precision": "ns"}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        body = "\n".join([row.line for row in rows]).encode()
        response = self.http.request("POST", "/write", params, body)
        if response.status == 204:
            return
        message = f"InfluxDB {self.http.base} /write answered {response.status}: {_error_text(response)}"
        if response.status == 400:
            # e.g. "partial write: field type conflict": the good points are in, the bad never will be.
            raise BackendRejected(message)
        if response.status == 404:
            self._database_checked = False
        raise BackendDown(message)

    def close(self) -> None:
        self.http.close()


class InfluxV2Writer:
    """InfluxDB 2.x/3.x (and 1.8+ with its v2 endpoint): influxdb-client's write API."""

    def __init__(self, cfg: InfluxConfig) -> None:
        assert cfg.token is not None and cfg.bucket and cfg.org  # the config validator guarantees it
        self.cfg = cfg
        self.bucket, self.org = cfg.bucket, cfg.org
        self.name = "influxdb-v2"
        self.client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token.get_secret_value(),
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            verify_ssl=cfg.verify_ssl,
            retries=_retry(cfg),
        )
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        try:
            self.api.write(
                bucket=self.bucket,
                org=self.org,
                record="\n".join([row.line for row in rows]),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # the stub types it as str
            )
        except ApiException as exc:
            message = f"InfluxDB {self.cfg.url} write answered {exc.status}: {str(exc.body)[:300]}"
            if exc.status in (400, 422):
                raise BackendRejected(message) from exc
            raise BackendDown(message) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendDown(f"InfluxDB {self.cfg.url} unreachable: {exc}") from exc

    def close(self) -> None:
        self.api.close()
        self.client.close()


class InfluxQLReader:
    """InfluxQL over ``/query`` (1.x natively; 2.x/3.x through their v1-compatible endpoint)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.http = _Http(cfg)
        self.name = f"influxdb-{cfg.api}"

    def query(self, text: str) -> list[dict[str, Any]]:
        """Run one statement; returns its series (``name``, ``tags``, ``columns``, ``values``)."""
        params = {"db": self.cfg.database or "", "q": text, "epoch": "ns"}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        response = self.http.request("GET", "/query", params)
        if response.status != 200:
            raise BackendError(f"InfluxQL query failed ({response.status}): {_error_text(response)}: {text}")
        data = json.loads(response.data)
        results = data.get("results") or [{}]
        if "error" in results[0]:
            raise BackendError(f"InfluxQL error: {results[0]['error']}: {text}")
        return list(results[0].get("series") or [])

    def points(
        self, measurement: str, start_ns: int, end_ns: int, where: dict[str, str] | None = None
    ) -> list[StoredPoint]:
        conditions = [f"time >= {start_ns}", f"time < {end_ns}"]
        conditions += [f"\"{k}\" = '{v}'" for k, v in (where or {}).items()]
        # GROUP BY * returns the tags of each series apart from the fields.
        text = f'SELECT * FROM "{measurement}" WHERE {" AND ".join(conditions)} GROUP BY *'
        out: list[StoredPoint] = []
        for series in self.query(text):
            tags = dict(series.get("tags") or {})
            columns = series["columns"]
            for values in series["values"]:
                record = dict(zip(columns, values, strict=True))
                ts = int(record.pop("time"))
                fields = {k: v for k, v in record.items() if v is not None and k not in tags}
                out.append(StoredPoint(ts, tags, fields))
        out.sort(key=lambda p: p.ts_ns)
        return out

    def aggregate(self, query: Query, site: str, start_ns: int, end_ns: int, every_s: int) -> Series:
        text = influxql(
            query,
            site=site,
            time_filter=f"time >= {start_ns} AND time < {end_ns}",
            interval=f"{every_s}s",
        )
        out: Series = {}
        for series in self.query(text):
            tags = series.get("tags") or {}
            label = tags.get(query.group_by, "") if query.group_by else query.name
            if query.group_by:
                label = f"{query.group_by}={label}"
            out[label] = [(int(t), float(v)) for t, v in series["values"] if v is not None]
        return out

    def close(self) -> None:
        self.http.close()
