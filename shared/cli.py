"""The one way every ``ongrid`` command line is built.

Typer draws its usage errors and help in rich boxes sized to the terminal, so in a narrow pane
(tmux, a phone's SSH client) or a log a long message or path is broken across box lines and cannot
be copied or grepped whole. Plain click output prints each message on one line; no completion
scripts and no rich tracebacks (errors are one line naming the field, see shared/config).
"""

from __future__ import annotations

from typing import Any

import typer


def typer_app(help_text: str, **settings: Any) -> typer.Typer:
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help=help_text,
        **settings,
    )
