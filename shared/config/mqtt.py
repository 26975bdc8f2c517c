"""Broker connection."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from .base import Section


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect with TLS (port is usually 8883).")
    ca_file: str | None = Field(None, description="CA bundle that signed the broker certificate.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = None
    insecure: bool = Field(False, description="Skip hostname verification (self-signed test brokers only).")


class MqttConfig(Section):
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = Field(None, description="Per-service user in the secured deployment.")
    password: SecretStr | None = Field(None, description="Prefer ONGRID_MQTT__PASSWORD in the environment.")
    tls: TlsConfig = TlsConfig()
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    # A service must be back within 5 s of the broker (issue 8): with +-20 % jitter a 4 s cap
    # reconnects at most 4.8 s after the broker returns, however long it was away.
    reconnect_max_s: Annotated[float, Field(gt=0)] = Field(
        4.0, description="Longest wait between reconnect attempts (backoff doubles up to it, +-20 % jitter)."
    )
    client_id_prefix: str = Field("ongrid", description="MQTT client ids are prefix-site-service[-random].")
