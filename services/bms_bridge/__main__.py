"""``python -m services.bms_bridge --config FILE`` (or ``ongrid bms-bridge``)."""

from __future__ import annotations

from shared.service import service_main


def main(argv: list[str] | None = None) -> None:
    from .service import check_config, run

    service_main(
        "bms-bridge", run, argv, check=check_config, help_text="Read Pylontech BMS stacks over RS485 and publish them."
    )


if __name__ == "__main__":
    main()
