"""The stream worker's boundary (streams/envelope.py): what the contract refuses is refused with a reason naming the
field and the rule; what CloudEvents 1.0 allows (extensions, media-type parameters) is read and kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.events import StatusEvent
from streams.envelope import Refused, read_record
from tests.streams.events import project_stream

EVENTS = project_stream("ke-envelope", approve_cdb=False)  # proposed, screening_passed, review_opened
PROPOSED, REVIEW_OPENED = EVENTS[0], EVENTS[2]


def raw(event: StatusEvent) -> dict[str, Any]:
    return dict(json.loads(event.model_dump_json()))


def read(body: dict[str, Any], key: bytes = b"ke-envelope") -> StatusEvent | Refused:
    return read_record(key, json.dumps(body).encode())


def refusal(body: dict[str, Any], key: bytes = b"ke-envelope") -> str:
    found = read(body, key)
    assert isinstance(found, Refused), found
    return found.reason


@pytest.mark.parametrize(
    ("event", "path", "field"),
    [
        (PROPOSED, ["time"], "time"),
        (REVIEW_OPENED, ["time"], "time"),
        (REVIEW_OPENED, ["data", "deadline"], "data.deadline"),
    ],
)
def test_a_date_time_without_its_utc_offset_is_refused_naming_the_field(
    event: StatusEvent, path: list[str], field: str
) -> None:
    body = raw(event)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "2026-11-02T10:00:00"
    reason = refusal(body)
    assert reason.startswith(f"{field}: ") and "[timezone_aware]" in reason, reason
    target[path[-1]] = "2026-11-02T10:00:00+03:00"  # the same instant written with its offset is fine
    assert isinstance(read(body), StatusEvent)


@pytest.mark.parametrize(
    "extensions",
    [{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, {"partitionkey": "ke-envelope"}],
)
def test_extension_attributes_are_allowed_and_kept(extensions: dict[str, Any]) -> None:
    event = read(raw(PROPOSED) | extensions | {"sampled": True, "hops": 2})
    assert isinstance(event, StatusEvent)
    assert event.extensions == extensions | {"sampled": True, "hops": 2}
    assert json.loads(event.model_dump_json()).items() >= extensions.items()  # kept in the feed record


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("Trace-Parent", "x", "lower-case letters or digits"),
        ("averyveryverylongname1", "x", "1 to 20"),
        ("obj", {}, "a string"),
    ],
)
def test_an_extension_attribute_outside_cloudevents_rules_is_refused_by_name(name: str, value: Any, rule: str) -> None:
    reason = refusal(raw(PROPOSED) | {name: value})
    assert f"extension attribute '{name}'" in reason and rule in reason, reason


@pytest.mark.parametrize(
    "media_type",
    ["application/json", "Application/JSON", "application/json; charset=utf-8", 'application/json;charset="UTF-8"'],
)
def test_json_media_types_are_compared_as_media_types(media_type: str) -> None:
    assert isinstance(read(raw(PROPOSED) | {"datacontenttype": media_type}), StatusEvent)


@pytest.mark.parametrize("media_type", ["text/plain", "application/xml", "application/json; charset=latin-1"])
def test_other_media_types_are_refused_naming_the_field(media_type: str) -> None:
    assert refusal(raw(PROPOSED) | {"datacontenttype": media_type}).startswith("datacontenttype: ")


@pytest.mark.parametrize("field", ["dataschema", "time", "subject", "id"])
def test_a_missing_required_attribute_is_named(field: str) -> None:
    body = raw(PROPOSED)
    del body[field]
    assert refusal(body) == f"{field}: Field required [missing]"


def test_each_refusal_names_the_field_and_the_rule() -> None:
    newer = raw(PROPOSED) | {"dataschema": PROPOSED.dataschema[:-1] + "2"}
    assert refusal(newer).startswith("dataschema: version 2 is newer than this worker's 1")
    assert refusal(raw(PROPOSED) | {"type": "com.example.other"}).startswith("type: 'com.example.other' is not")
    assert refusal(raw(PROPOSED), key=b"someone-else").startswith("key: the record key 'someone-else'")
    assert refusal(raw(PROPOSED) | {"type": REVIEW_OPENED.type, "dataschema": REVIEW_OPENED.dataschema}).startswith(
        "envelope: type 'org.alliance.project.review_opened' does not name the kind of its data"
    )
    foreign = raw(PROPOSED)
    foreign["data"]["colour"] = "red"
    assert refusal(foreign) == "data.colour: Extra inputs are not permitted [extra_forbidden]"
    assert read_record(b"k", b"{not json") == Refused(
        "value: not JSON in UTF-8 (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )
    assert read_record(b"k", b"") == Refused("value: empty record; a CloudEvent in JSON (structured mode) is expected")
    assert read_record(b"k", b"[1]") == Refused("value: a CloudEvents envelope is a JSON object")
