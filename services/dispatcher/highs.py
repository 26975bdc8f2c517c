"""HiGHS start-up noise, kept off stdout."""

from __future__ import annotations

import os
import sys


def silence_highs_banner() -> None:
    """HiGHS prints its banner on the C stdout once per process, outside Python's ``sys.stdout``.

    Creating one solver while fd 1 points at /dev/null spends that banner, so a ``--json`` report
    stays JSON and a service's stdout stays free of it.
    """
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
