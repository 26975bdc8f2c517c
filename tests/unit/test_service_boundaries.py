"""Every service imports only shared/ and itself (issue 11), checked statically on every module of
its package, so a module only a CLI loads (the process-level test in
tests/integration/test_service_imports.py never sees it) cannot cross the line either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
SERVICES = ("inverter_bridge", "bms_bridge", "meter_bridge", "dispatcher", "recorder", "simulator")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_shared_and_itself(service: str) -> None:
    crossings = [
        f"{path.relative_to(SERVICES_DIR.parent)} imports {name}"
        for path in sorted((SERVICES_DIR / service).rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name.startswith("services") and not name.startswith(f"services.{service}")
    ]
    assert crossings == []
