"""Payment instructions sent to the institutions' systems.

Each carries an idempotency key derived from the business key (project, milestone, institution, action), so an
institution that receives the same instruction twice executes it once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import Institution
from schemas.money import Money


class InstructionAction(StrEnum):
    disburse = "disburse"
    release_retention = "release_retention"
    release_commitment = "release_commitment"


class Instruction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str = Field(description="Idempotency key: '<project>:<action>:<institution>[:<milestone>]'")
    project_id: str
    institution: Institution
    action: InstructionAction
    amount: Money
    milestone_id: str | None = None
    reason: str | None = None

    @classmethod
    def make(
        cls,
        project_id: str,
        institution: Institution,
        action: InstructionAction,
        amount: Money,
        milestone_id: str | None = None,
        reason: str | None = None,
    ) -> Instruction:
        parts = [project_id, action.value, institution.value] + ([milestone_id] if milestone_id else [])
        return cls(
            instruction_id=":".join(parts),
            project_id=project_id,
            institution=institution,
            action=action,
            amount=amount,
            milestone_id=milestone_id,
            reason=reason,
        )
