"""One institution's review of a project: the clock of its decision, in projects that entered financing before
`review-clocks-in-project` (later projects keep each review's clock as their own timers). Registered on every worker
until the last such project has closed.

The project workflow owns the decisions (it validates them against the whole financing package); the review
owns the deadline. It reminds the project before the deadline and expires at it, unless the project closes it
first. Because a decision is only accepted once the close signal reached a running review, a decision and an
expiry can never both win.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.timetable import ReviewClosed, ReviewInput, ReviewReminderDue, ReviewResult
    from workflows.deadlines import wait_until

REMINDER_SIGNAL = "reminder_due"


@workflow.defn(name="InstitutionReview")
class ReviewWorkflow:
    @workflow.init
    def __init__(self, review: ReviewInput) -> None:
        self._closed: str | None = None

    @workflow.signal
    def close(self, closed: ReviewClosed) -> None:
        if self._closed is None:
            self._closed = closed.outcome

    def _is_closed(self) -> bool:
        return self._closed is not None

    @workflow.query
    def outcome(self) -> str:
        return self._closed or "open"

    @workflow.run
    async def run(self, review: ReviewInput) -> ReviewResult:
        name = review.institution.display
        workflow.set_current_details(
            f"{name} reviews project {review.project_id}: decision due by {review.deadline:%Y-%m-%d %H:%M} UTC"
        )
        if review.reminder_at is not None and not await wait_until(self._is_closed, review.reminder_at):
            parent = workflow.info().parent
            if parent is not None:
                await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                    REMINDER_SIGNAL, ReviewReminderDue(institution=review.institution)
                )
        closed = await wait_until(self._is_closed, review.deadline)
        workflow.set_current_details(f"{name} review: {self._closed if closed else 'expired'}")
        return ReviewResult(institution=review.institution, expired=not closed)
