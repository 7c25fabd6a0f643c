"""The stream worker's boundary: one record of the status topic read as a `StatusEvent`, or refused with a reason
that names the field and the rule it breaks (the dead letter's `reason`).

A record the contract does not allow never reaches a view: a naive date-time, a foreign type, a schema version
newer than this worker's, a key that is not the event's project. What the contract allows and CloudEvents 1.0
allows too (extension attributes, media-type parameters, no `dataschema`) is read and kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.events import SCHEMA_VERSION, TYPE_PREFIX, StatusEvent

SCHEMA_URN = re.compile(r"^urn:alliance-workflows:schema:(?P<type>[^:]+):(?P<version>\d+)$")
MAX_ERRORS = 3


@dataclass(frozen=True)
class Refused:
    """Why a record cannot be folded: `field: rule`, one line."""

    reason: str


def _field(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """The dotted path of a validation error, without the union tag pydantic inserts for `data`'s kind."""
    parts = list(loc)
    data = raw.get("data")
    if len(parts) > 1 and parts[0] == "data" and isinstance(data, dict) and parts[1] == data.get("kind"):
        del parts[1]
    return ".".join(str(p) for p in parts) or "envelope"


def explain(err: ValidationError, raw: dict[str, Any]) -> str:
    """`field: rule [error type]` for each error (at most three, then how many more)."""
    errors = err.errors(include_url=False)
    said = []
    for error in errors[:MAX_ERRORS]:
        message = str(error["msg"]).removeprefix("Value error, ")
        said.append(f"{_field(error['loc'], raw)}: {message} [{error['type']}]")
    if len(errors) > MAX_ERRORS:
        said.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(said)


def _schema_refusal(kind: str, schema: Any) -> Refused | None:
    if isinstance(schema, str) and (found := SCHEMA_URN.match(schema)) is not None:
        version = int(found["version"])
        if version > SCHEMA_VERSION:
            return Refused(f"dataschema: version {version} is newer than this worker's {SCHEMA_VERSION} ({schema})")
        if found["type"] != kind:
            return Refused(f"dataschema: '{schema}' is the schema of {found['type']}, not of type '{kind}'")
    return None


def _refusal(value: bytes, err: ValidationError) -> Refused:
    """Why a record that does not validate is refused: the envelope's own rules first (JSON object, an alliance
    type, a schema version this worker knows), then the validation errors, each naming its field."""
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        return Refused(f"value: not JSON in UTF-8 ({bad})")
    if not isinstance(raw, dict):
        return Refused("value: a CloudEvents envelope is a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind.startswith(TYPE_PREFIX):
        return Refused(f"type: '{kind}' is not an alliance project event ('{TYPE_PREFIX}<kind>')")
    return _schema_refusal(kind, raw.get("dataschema")) or Refused(explain(err, raw))


def read_record(key: bytes | None, value: bytes | None) -> StatusEvent | Refused:
    """The event a status-topic record carries, or why it is refused. The record is parsed once when it is valid
    (the common case); a record that is not is parsed again as plain JSON to say why."""
    if not value:
        return Refused("value: empty record; a CloudEvent in JSON (structured mode) is expected")
    try:
        event = StatusEvent.model_validate_json(value)
    except ValidationError as err:
        return _refusal(value, err)
    if (refused := _schema_refusal(event.type, event.dataschema)) is not None:
        return refused
    if key != event.subject.encode():
        shown = key.decode("utf-8", "replace") if key is not None else None
        return Refused(f"key: the record key {shown!r} is not the event's project '{event.subject}' (its subject)")
    return event
