"""The checked-in example proposals, as they are or changed for a test."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from alliance.demo import EXAMPLES
from schemas.proposal import Proposal


def raw_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def example(
    name: str, project_id: str | None = None, change: Callable[[dict[str, Any]], None] | None = None
) -> Proposal:
    data = raw_example(name)
    if project_id:
        data["project_id"] = project_id
    if change:
        change(data)
    return Proposal.model_validate(data)
