"""Where readings are stored, and how the recorder batches, spools and computes statistics."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from shared.topics import check_name

from .base import Section


class InfluxConfig(Section):
    """``api: v1``: InfluxDB 1.x ``/write`` + ``/query`` (database, retention_policy, username/password).
    ``api: v2``: InfluxDB 2.x/3.x/1.8+ write API (bucket, org, token); reads go through the v1
    compatibility ``/query`` endpoint (DBRP mapping), so ``database`` names the mapped database."""

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str | None = Field("ongrid", description="v1: database name (v2: the DBRP-mapped name for reads).")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    bucket: str | None = Field(None, description="v2: bucket.")
    org: str | None = None
    token: SecretStr | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    verify_ssl: bool = True
    retries: Annotated[int, Field(ge=0, le=10)] = Field(
        3, description="HTTP retries inside one write (5xx, connection errors) before the batch stays spooled."
    )

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxConfig:
        if self.api == "v1" and not self.database:
            raise ValueError("influxdb.database is required when api is v1")
        if self.api == "v2":
            missing = [key for key in ("bucket", "org", "token") if getattr(self, key) is None]
            if missing:
                raise ValueError(f"influxdb.{', '.join(missing)} required when api is v2")
        return self


class RecorderConfig(Section):
    id: str = "recorder"
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    spool_dir: str = "var/spool"
    spool_max_mb: Annotated[float, Field(gt=0)] = 512.0
    sqlite_path: str = Field("var/ongrid.sqlite", description="Embedded store when no influxdb is configured.")
    share_group: str | None = Field(None, description="MQTT 5 shared-subscription group to split load.")
    all_sites: bool = Field(
        False,
        description=(
            "Record every site on the broker (ongrid/+/#), not only this config's site: one recorder "
            "(or a share_group of them) serving many homes."
        ),
    )
    session_expiry_s: Annotated[int, Field(ge=0)] = 86_400
    stats_interval_s: Annotated[float, Field(gt=0)] = 300.0
    status_interval_s: Annotated[float, Field(gt=0)] = Field(10.0, description="How often RecorderStatus is published.")
    retry_max_s: Annotated[float, Field(gt=0)] = Field(30.0, description="Longest wait between database retries.")
    memory_max_rows: Annotated[int, Field(ge=0)] = Field(
        200_000, description="Rows held in memory when the spool cannot be written (full disk)."
    )
    battery_cost: Annotated[float, Field(ge=0)] | None = Field(
        None, description="What the battery cost (tariff currency), for the payback figure."
    )
    stats_days: Annotated[int, Field(ge=1, le=3660)] = Field(
        400, description="Days of daily statistics the payback figure looks back over."
    )

    @model_validator(mode="after")
    def _names(self) -> RecorderConfig:
        check_name(self.id, "recorder.id")
        if self.share_group is not None:
            check_name(self.share_group, "recorder.share_group")
        return self
