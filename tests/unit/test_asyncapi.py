import yaml

from shared import asyncapi
from shared.messages import ALL_MESSAGES


def test_committed_asyncapi_document_is_current() -> None:
    assert asyncapi.TARGET.exists(), "docs/asyncapi.yaml is missing: run `make docs`"
    assert asyncapi.TARGET.read_text() == asyncapi.render(), "docs/asyncapi.yaml is stale: run `make docs`"


def test_committed_topics_page_is_current() -> None:
    assert asyncapi.TOPICS_MD.read_text() == asyncapi.render_topics(), "docs/topics.md is stale: run `make docs`"


def test_document_covers_every_model_and_resolves_references() -> None:
    doc = yaml.safe_load(asyncapi.render())
    assert set(doc["components"]["messages"]) == {model.__name__ for model in ALL_MESSAGES}
    text = asyncapi.render()
    for ref in {line.split("'#/")[1].rstrip("'") for line in text.splitlines() if "$ref: '#/" in line}:
        node = doc
        for part in ref.split("/"):
            assert part in node, f"dangling reference #/{ref}"
            node = node[part]
    assert doc["channels"]["inverter_command"]["address"] == "ongrid/{site}/inverter/{device}/command"
