"""Activity names and their input/output models: what a workflow may import about its activities.

Kept apart from the activity implementations so that workflow code never imports a client library.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import StatusEvent
from schemas.instructions import Instruction
from schemas.proposal import Proposal

SCREEN_PROPOSAL = "screen_proposal"
PUBLISH_STATUS_EVENTS = "publish_status_events"
SEND_INSTRUCTION = "send_instruction"

# ApplicationError types of a publish that no retry can help (raised non-retryable by activities/publishing.py):
# the record is larger than the producer or the topic accepts (Kafka's max.request.size / max.message.bytes) ...
RECORD_TOO_LARGE = "KafkaRecordTooLarge"
# ... or the topic refuses the worker: not authorised to write to it, or not a valid topic.
TOPIC_REFUSED = "KafkaTopicRefused"
PERMANENT_PUBLISH_ERRORS = (RECORD_TOO_LARGE, TOPIC_REFUSED)


class ScreenProposal(BaseModel):
    model_config = ConfigDict(frozen=True)

    proposal: Proposal


class ScreeningResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    eligible: bool
    reasons: list[str]
    contract_usd: Decimal
    rate_date: str


class PublishEvents(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: list[StatusEvent] = Field(min_length=1)


class SendInstruction(BaseModel):
    model_config = ConfigDict(frozen=True)

    instruction: Instruction
