"""Example proposals for the benchmarks, from examples/ (the benchmarks import nothing from tests/)."""

from __future__ import annotations

import json

from alliance.demo import EXAMPLES
from schemas.proposal import Proposal


def example(name: str, project_id: str) -> Proposal:
    """examples/<name>.json under another project id."""
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    data["project_id"] = project_id
    return Proposal.model_validate(data)


def smart_homes(project_id: str) -> Proposal:
    """The Malaysian smart homes pilot: a CDB loan only, seven milestones."""
    return example("my-smart-homes-pilot", project_id)
