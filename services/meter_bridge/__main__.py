"""``python -m services.meter_bridge --config FILE`` (or ``ongrid meter-bridge``)."""

from __future__ import annotations

from shared.service import service_main


def main(argv: list[str] | None = None) -> None:
    from .service import check_config, run

    service_main(
        "meter-bridge", run, argv, check=check_config, help_text="Read CT/energy meters over Modbus and publish them."
    )


if __name__ == "__main__":
    main()
