"""A realistic stream of one project's status events, built from the contract's models (tests and benchmarks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas import events as ev
from schemas.decisions import Institution, Terms
from schemas.money import Money
from schemas.proposal import Proposal, Sector
from schemas.status import Stage

START = datetime(2027, 1, 4, 9, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "zm-lusaka-smart-city-2.json"


def example(project_id: str) -> Proposal:
    return Proposal.model_validate(json.loads(EXAMPLE.read_text()) | {"project_id": project_id})


def project_stream(
    project_id: str, country: str = "KE", approve_cdb: bool = True, run: str | None = None, reminders: int = 0
) -> list[ev.StatusEvent]:
    """Events #1.. of one project up to its first disbursement (or to its open review without `approve_cdb`);
    `run`: their `projectrun`; `reminders`: that many review reminders after the review opens (a longer history)."""
    proposal = example(project_id)
    deadline = START + timedelta(days=30)
    usd = Money.of("42500000.00", "USD")
    steps: list[tuple[type[ev.EventData], Stage, dict[str, Any]]] = [
        (
            ev.Proposed,
            Stage.screening,
            {
                "title": proposal.title,
                "borrower": proposal.borrower,
                "country": country,
                "sector": Sector.smart_cities,
                "contract": proposal.contract,
                "financing": proposal.financing,
            },
        ),
        (ev.ScreeningPassed, Stage.screening, {"contract_usd": "250000000.00", "rate_date": "2026-11-02"}),
        (ev.ReviewOpened, Stage.financing, {"institution": Institution.cdb, "requested": usd, "deadline": deadline}),
    ]
    steps += [(ev.ReviewReminder, Stage.financing, {"institution": Institution.cdb, "deadline": deadline})] * reminders
    if approve_cdb:
        steps += [
            (
                ev.ReviewApproved,
                Stage.financing,
                {"institution": Institution.cdb, "amount": usd, "terms": Terms(), "conditions": [], "officer": "L"},
            ),
            (ev.FinancingClosed, Stage.effectiveness, {"tranches": [], "sinosure_cover": None}),
            (ev.ProjectEffective, Stage.delivery, {}),
            (
                ev.DisbursementInstructed,
                Stage.delivery,
                {
                    "milestone_id": "survey",
                    "institution": Institution.cdb,
                    "paid": Money.of("3825000.00", "USD"),
                    "retained": Money.of("425000.00", "USD"),
                    "instruction_id": f"{project_id}:disburse:cdb:survey",
                },
            ),
        ]
    return [
        ev.StatusEvent.wrap(
            f"{project_id}-{n}",
            START + timedelta(hours=n),
            model(project_id=project_id, sequence=n, stage=stage, **fields),
            projectrun=run,
        )
        for n, (model, stage, fields) in enumerate(steps, start=1)
    ]
