"""``python -m services.inverter_bridge --config FILE`` (or ``ongrid inverter-bridge``)."""

from __future__ import annotations

from shared.service import service_main


def main(argv: list[str] | None = None) -> None:
    from .service import run

    service_main(
        "inverter-bridge",
        run,
        argv,
        help_text="Poll battery inverters over Modbus, publish their state and execute commands safely.",
    )


if __name__ == "__main__":
    main()
