"""The checked-in JSON Schemas are what downstream systems code against: they must match the models."""

import json

from schemas.contract import JSON_DIR, generated, render
from schemas.events import PAYLOAD_MODELS, Payload, StatusEvent, event_type, kind_of


def test_checked_in_json_schemas_match_the_models() -> None:
    stale = [
        name
        for name, schema in generated().items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text(encoding="utf-8") != render(schema)
    ]
    assert stale == [], f"out of date: {stale}; run `make schemas` and commit schemas/json"
    on_disk = {str(p.relative_to(JSON_DIR)) for p in JSON_DIR.rglob("*.json")}
    assert on_disk == set(generated()), "schemas/json holds files no model generates"


def test_every_payload_model_is_in_the_envelope_union_once() -> None:
    union_members = Payload.__args__[0].__args__  # type: ignore[attr-defined]
    assert set(union_members) == set(PAYLOAD_MODELS)
    kinds = [kind_of(m) for m in PAYLOAD_MODELS]
    assert len(set(kinds)) == len(kinds)


def test_an_event_round_trips_through_its_json_form() -> None:
    schema = json.loads((JSON_DIR / "status-event.json").read_text())
    assert set(schema["required"]) >= {"id", "source", "type", "subject", "time", "dataschema", "data"}
    raw = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/alliance/projects/p1",
        "type": event_type("review_reminder"),
        "subject": "p1",
        "time": "2027-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "urn:x",
        "data": {
            "project_id": "p1",
            "sequence": 3,
            "stage": "financing",
            "kind": "review_reminder",
            "institution": "cdb",
            "deadline": "2027-01-31T00:00:00Z",
        },
    }
    event = StatusEvent.model_validate(raw)
    assert event.data.kind == "review_reminder"
    assert StatusEvent.model_validate_json(event.model_dump_json()) == event
