"""Find and load the register maps shipped in ``shared/registers/maps``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from .model import RegisterMap

MAPS_DIR = Path(__file__).with_name("maps")


class MapError(ValueError):
    """A map that is missing or does not validate; the message names the file and the keys."""


def available_maps() -> list[str]:
    """Names of every shipped map, sorted."""
    return sorted(path.stem for path in MAPS_DIR.glob("*.yaml"))


def load_map_file(path: Path) -> RegisterMap:
    """Load and validate one map file (a user's own map can live anywhere)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MapError(f"cannot read register map {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MapError(f"register map {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MapError(f"register map {path} must hold a mapping at the top")
    try:
        regmap = RegisterMap.model_validate(data)
    except ValidationError as exc:
        lines = [f"invalid register map {path}:"]
        for item in exc.errors(include_url=False):
            key = ".".join(str(part) for part in item["loc"]) or "(top level)"
            message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  {key}: {message}")
        raise MapError("\n".join(lines)) from None
    if regmap.name != path.stem:
        raise MapError(f"register map {path} declares name {regmap.name!r}; it must match the file name")
    return regmap


@cache
def load_map(name: str) -> RegisterMap:
    """The shipped map called ``name`` (e.g. ``sofar_me3000sp``). Maps are frozen, so cached."""
    path = MAPS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise MapError(f"no register map named {name!r}; available: {', '.join(available_maps())}")
    return load_map_file(path)
