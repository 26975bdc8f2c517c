"""``python -m services.dispatcher --config FILE`` (or ``ongrid dispatcher``)."""

from __future__ import annotations

from shared.service import service_main


def main(argv: list[str] | None = None) -> None:
    from .service import check_config, run

    service_main(
        "dispatcher", run, argv, check=check_config, help_text="Plan and control the battery and flexible loads."
    )


if __name__ == "__main__":
    main()
