"""``python -m services.recorder --config FILE`` / ``ongrid recorder --config FILE``."""

from __future__ import annotations

from shared.service import service_main

from .service import bus_options, check_config, run


def main(argv: list[str] | None = None) -> None:
    service_main(
        "recorder",
        run,
        argv,
        help_text="Store every reading on the bus in InfluxDB (or the embedded store), with a durable spool.",
        bus_options=bus_options,
        check=check_config,
    )


if __name__ == "__main__":
    main()
