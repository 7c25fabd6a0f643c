"""JSON Schema files generated from the models, checked in under `schemas/json/` for downstream systems.

`python -m schemas.contract` rewrites them; a test fails when the checked-in files differ from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.derived import Alert, DeadLetter, PortfolioSnapshot
from schemas.events import PAYLOAD_MODELS, StatusEvent, event_type, kind_of
from schemas.instructions import Instruction
from schemas.proposal import Proposal
from schemas.status import ProjectStatus

JSON_DIR = Path(__file__).parent / "json"


def _schema(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, **schema}


def generated() -> dict[str, dict[str, Any]]:
    """File name (relative to schemas/json) → JSON Schema."""
    files = {
        "status-event.json": _schema(StatusEvent, "status-event.json"),
        "proposal.json": _schema(Proposal, "proposal.json"),
        "project-status.json": _schema(ProjectStatus, "project-status.json"),
        "instruction.json": _schema(Instruction, "instruction.json"),
        "portfolio-snapshot.json": _schema(PortfolioSnapshot, "portfolio-snapshot.json"),
        "alert.json": _schema(Alert, "alert.json"),
        "dead-letter.json": _schema(DeadLetter, "dead-letter.json"),
    }
    for model in PAYLOAD_MODELS:
        name = f"events/{event_type(kind_of(model))}.json"
        files[name] = _schema(model, name)
    return files


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = JSON_DIR) -> list[Path]:
    written = []
    for name, schema in generated().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"wrote {path}\n")
