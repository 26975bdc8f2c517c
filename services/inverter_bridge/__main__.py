"""``python -m services.inverter_bridge --config FILE`` (or ``ongrid inverter-bridge``)."""

from __future__ import annotations

from shared.service import service_main


def main(argv: list[str] | None = None) -> None:
    from .service import check_config, run

    service_main(
        "inverter-bridge",
        run,
        argv,
        check=check_config,
        help_text="Poll battery inverters over Modbus, publish their state and execute commands safely.",
    )


if __name__ == "__main__":
    main()
