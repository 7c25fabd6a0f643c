"""One project's view, folded from its status events: pure functions, so the stream worker's table updates are
idempotent and can be checked against a fresh computation from the whole topic.

Events are applied strictly in `sequence` order. An event already applied (a retried publish: same sequence) is a
duplicate and changes nothing. An event ahead of the next expected sequence is held back and a gap is reported;
when the missing events arrive, the held ones are applied in order. Nothing is skipped silently.

A project id proposed again after its first workflow was deleted is another incarnation: its events carry another
`projectrun` (the first-execution run id of its workflow). An event of another run than the view's starts the view
afresh (`incarnation` counts them), so the new run's #1 and #2 are not taken for duplicates of the old run's. Events
without `projectrun` (published before it existed) belong to the view's run.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from schemas.decisions import Institution
from schemas.events import StatusEvent
from schemas.money import Money
from schemas.status import Stage


class Amounts(BaseModel):
    """Per institution, in the currency of its request (converted to USD only when the portfolio is read)."""

    requested: Money | None = None
    approved: Money | None = None
    released: Money | None = None
    disbursed: Money | None = None


class ProjectView(BaseModel):
    project_id: str
    title: str = ""
    country: str = ""
    sector: str = ""
    stage: Stage = Stage.screening
    stage_since: AwareDatetime | None = None
    run: str | None = Field(default=None, description="The `projectrun` of the events folded, once one carried it")
    incarnation: int = Field(default=0, description="0, then 1, 2... each time the project id is proposed again")
    last_sequence: int = 0
    last_event_id: str | None = None
    open_reviews: dict[Institution, AwareDatetime] = Field(default_factory=dict, description="institution → deadline")
    amounts: dict[Institution, Amounts] = Field(default_factory=dict)
    held: dict[int, StatusEvent] = Field(default_factory=dict, description="Events that arrived ahead of a gap")


class Gap(BaseModel):
    project_id: str
    expected: int
    received: int


class Folded(BaseModel):
    """The outcome of offering one event to a view."""

    view: ProjectView
    applied: list[StatusEvent] = Field(description="Events applied now, in order (for the deduplicated feed)")
    duplicate: bool = False
    gap: Gap | None = None


def another_run(view: ProjectView, event: StatusEvent) -> bool:
    """Whether the event belongs to another incarnation of the project id than the view."""
    run = event.projectrun
    if run is None or run == view.run:
        return False
    if view.run is None:  # a view of events without run ids: only a new #1 starts another incarnation
        return event.data.sequence == 1 and view.last_sequence >= 1
    return True


def fold_into(current: ProjectView, event: StatusEvent) -> Folded:
    """Offers one event to a view, changing the view in place (`fold` works on a copy)."""
    if another_run(current, event):
        fresh = ProjectView(project_id=current.project_id, run=event.projectrun, incarnation=current.incarnation + 1)
        for name in ProjectView.model_fields:
            setattr(current, name, getattr(fresh, name))
    elif current.run is None and event.projectrun is not None:
        current.run = event.projectrun
    sequence = event.data.sequence
    if sequence <= current.last_sequence or sequence in current.held:
        return Folded(view=current, applied=[], duplicate=True)
    if sequence > current.last_sequence + 1:
        current.held[sequence] = event
        return Folded(
            view=current,
            applied=[],
            gap=Gap(project_id=current.project_id, expected=current.last_sequence + 1, received=sequence),
        )
    applied = [event]
    _apply(current, event)
    while current.last_sequence + 1 in current.held:
        following = current.held.pop(current.last_sequence + 1)
        _apply(current, following)
        applied.append(following)
    return Folded(view=current, applied=applied)


def fold(view: ProjectView | None, event: StatusEvent) -> Folded:
    current = view.model_copy(deep=True) if view else ProjectView(project_id=event.subject, run=event.projectrun)
    return fold_into(current, event)


def _add(total: Money | None, amount: Money) -> Money:
    return amount if total is None or total.currency != amount.currency else total + amount


def _apply(view: ProjectView, event: StatusEvent) -> None:
    data = event.data
    if data.stage is not view.stage or view.stage_since is None:
        view.stage_since = event.time
    view.stage = data.stage
    view.last_sequence = data.sequence
    view.last_event_id = event.id
    kind = data.kind
    institution: Institution | None = getattr(data, "institution", None)
    amounts = view.amounts.setdefault(institution, Amounts()) if institution else None
    if kind == "proposed":
        view.title, view.country, view.sector = data.title, data.country, data.sector.value  # type: ignore[union-attr]
    elif kind == "review_opened" and amounts is not None and institution is not None:
        amounts.requested = data.requested  # type: ignore[union-attr]
        view.open_reviews[institution] = data.deadline  # type: ignore[union-attr]
    elif kind == "review_approved" and amounts is not None and institution is not None:
        amounts.approved = data.amount  # type: ignore[union-attr]
        view.open_reviews.pop(institution, None)
    elif kind in ("review_rejected", "review_expired", "review_withdrawn") and institution is not None:
        view.open_reviews.pop(institution, None)
    elif kind == "commitment_released" and amounts is not None:
        amounts.released = _add(amounts.released, data.amount)  # type: ignore[union-attr]
    elif kind == "disbursement_instructed" and amounts is not None:
        amounts.disbursed = _add(amounts.disbursed, data.paid)  # type: ignore[union-attr]
    elif kind == "retention_released" and amounts is not None:
        amounts.disbursed = _add(amounts.disbursed, data.amount)  # type: ignore[union-attr]
    if data.stage is not Stage.financing:
        view.open_reviews.clear()
