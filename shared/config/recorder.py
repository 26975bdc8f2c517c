"""Where readings are stored."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from .base import Section


class InfluxConfig(Section):
    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str | None = Field("ongrid", description="v1: database name.")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    bucket: str | None = Field(None, description="v2: bucket.")
    org: str | None = None
    token: SecretStr | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    verify_ssl: bool = True


class RecorderConfig(Section):
    id: str = "recorder"
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    spool_dir: str = "var/spool"
    spool_max_mb: Annotated[float, Field(gt=0)] = 512.0
    sqlite_path: str = Field("var/ongrid.sqlite", description="Embedded store when no influxdb is configured.")
    share_group: str | None = Field(None, description="MQTT 5 shared-subscription group to split load.")
    session_expiry_s: Annotated[int, Field(ge=0)] = 86_400
    stats_interval_s: Annotated[float, Field(gt=0)] = 300.0
