"""One alliance project, from proposal to final acceptance: workflow id `project-<project id>`.

The workflow sequences; the rule modules decide. `financing`, `effectiveness`, `delivery` and `cancellation` say
whether a decision is allowed and what it changes (pure functions of the status, unit-tested without a server);
`basis` refuses decisions based on a status that has since changed; `limits` refuses what could not be delivered;
`ledger` remembers every decision id. This class holds the state, runs the activities and timers (each review's
reminder and deadline among them; review child workflows only in projects that entered financing before
`review-clocks-in-project`), and owns the outbox: every accepted decision and every transition becomes one status
event, numbered per project and queued in an outbox that a single publisher drains in order.

One writer of the stage: a decision is applied in one synchronous step of its Update handler (`_decide`); the main
coroutine moves the stage only through `_enter`, which never leaves a final stage, and re-checks cancellation after
every await, so an accepted cancellation wins over any transition still in flight and the outcome is always what
the cancellation's receipt said.

A project waiting years for a late milestone continues as new from its reminder loop (`_await_milestone`); the next
run starts from `ProjectInput.continued` and carries on waiting for the same milestone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.messages import (
        PUBLISH_STATUS_EVENTS,
        SCREEN_PROPOSAL,
        SEND_INSTRUCTION,
        PublishEvents,
        ScreeningResult,
        ScreenProposal,
        SendInstruction,
    )
    from schemas import events as ev
    from schemas.decisions import (
        Approve,
        AwaitProgress,
        Cancel,
        CompleteMilestone,
        Decision,
        Institution,
        Progress,
        ProvideInformation,
        Receipt,
        Reject,
        ReleaseProgressWaits,
        RequestInformation,
        SatisfyCondition,
    )
    from schemas.instructions import Instruction, InstructionAction
    from schemas.money import Money
    from schemas.proposal import MilestoneKind, Proposal
    from schemas.status import (
        Disbursement,
        EventRef,
        Milestone,
        ProjectStatus,
        Review,
        ReviewStatus,
        Stage,
    )
    from schemas.timetable import (
        Continued,
        ProjectInput,
        ReviewClosed,
        ReviewInput,
        ReviewReminderDue,
        ReviewResult,
    )
    from workflows import basis, cancellation, catalogue, effectiveness, financing, limits, remit, visibility
    from workflows.change import Change
    from workflows.deadlines import wait_until, wait_until_direct
    from workflows.delivery import add_months, check_complete_milestone, milestone_payment, undrawn
    from workflows.delivery import complete_milestone as complete
    from workflows.ledger import Ledger
    from workflows.refusals import NotPermitted, Refused, has_ended
    from workflows.remit import Action
    from workflows.review import REMINDER_SIGNAL, ReviewWorkflow

__all__ = ["NotPermitted", "ProjectWorkflow", "Refused", "workflow_id"]

WORKFLOW_ID_PREFIX = "project-"
# Kafka may be down for a while: keep retrying, never give up on an event.
PUBLISH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
PUBLISH_BATCH = 100
# After a permanent publishing error (the broker can never take the record as it is), try again this much later:
# an operator can fix the broker's limits meanwhile; the event is never dropped.
BLOCKED_PUBLISH_RETRY = timedelta(minutes=10)
# Open `await_progress` waits one project takes at a time (each holds an Update handler until it answers). Temporal
# lets one workflow hold 10 Updates not yet completed (`history.maxInFlightUpdates`); waits take at most half, so
# decisions always find room. A wait whose caller gave up is ended by the edge (`release_progress_waits`).
MAX_PROGRESS_WAITS = 5
# Patch ids (see the README's rule for changing workflow code); each has a committed history that records it.
REVIEWS_OPEN_TOGETHER = "reviews-open-before-their-clocks"
MILESTONE_REMINDERS = "milestone-reminders"
INSTRUCTIONS_AFTER_EVENTS = "instructions-after-events"
COVER_RELEASED_AFTER_CLOSING = "cover-released-after-closing"
CERTIFIED_MILESTONES_PAID = "certified-milestones-paid-after-cancel"
PUBLISHED_IN_MEMO = "published-sequence-in-memo"
REVIEW_CLOCKS_IN_PROJECT = "review-clocks-in-project"
PATCHES = (
    REVIEWS_OPEN_TOGETHER,
    MILESTONE_REMINDERS,
    INSTRUCTIONS_AFTER_EVENTS,
    COVER_RELEASED_AFTER_CLOSING,
    CERTIFIED_MILESTONES_PAID,
    PUBLISHED_IN_MEMO,
    REVIEW_CLOCKS_IN_PROJECT,
)
# The memo field that says up to which sequence the project's status events are on Kafka.
PUBLISHED_SEQUENCE_MEMO = "published_sequence"

D = TypeVar("D", bound=Decision)
E = TypeVar("E", bound=ev.EventData)
Check = Callable[[ProjectStatus, Proposal, D], None]
Apply = Callable[[ProjectStatus, D, str, datetime], Change]


def workflow_id(project_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{project_id}"


def named(decision: Decision) -> str:
    """The person a decision names as its author (officer, responder, or `by`)."""
    for name in ("officer", "responder", "by"):
        person = getattr(decision, name, None)
        if isinstance(person, str):
            return person
    raise TypeError(f"{type(decision).__name__} names no person")


@workflow.defn(name="AllianceProject")
class ProjectWorkflow:
    @workflow.init
    def __init__(self, start: ProjectInput) -> None:
        p = start.proposal
        self._proposal: Proposal = p
        self._timetable = start.timetable
        self._trusted_keys = list(start.trusted_keys)
        self._status = ProjectStatus(
            project_id=p.project_id,
            title=p.title,
            country=p.country,
            sector=p.sector,
            stage=Stage.screening,
            stage_since=workflow.now(),
            details="Screening the proposal against the institutions' eligibility rules",
            contract=p.contract,
            milestones=[
                Milestone(milestone_id=m.id, kind=m.kind, title=m.title, payment_share_pct=m.payment_share_pct)
                for m in p.milestones
            ],
        )
        self._outbox: list[ev.StatusEvent] = []
        self._ledger = Ledger()
        self._reviews: dict[Institution, workflow.ChildWorkflowHandle[ReviewWorkflow, ReviewResult]] = {}
        # Whether this run keeps the reviews' clocks itself (REVIEW_CLOCKS_IN_PROJECT) rather than in child workflows.
        self._clocks_in_project = False
        self._continue_after = start.continue_as_new_after_events
        self._run = 1
        # What the main coroutine waits for while it waits for people (None while it is busy): `await_progress`
        # answers once the main coroutine is back waiting, i.e. after what a decision set off.
        self._waiting: Callable[[], bool] | None = None
        self._finished = False
        self._closing = False  # continuing as new: progress waits answer now, the next run takes new ones
        self._open_waits: set[str] = set()  # Update ids of the `await_progress` waits not answered yet
        self._released_waits: set[str] = set()  # those whose callers gave up (`release_progress_waits`)
        self._waits_taken = 0  # `await_progress` Updates accepted in this run (limits.check_wait)
        if start.continued is not None:
            # A run that continues an earlier one: same project, same event numbering, same decisions remembered.
            self._status = start.continued.status.model_copy(deep=True)
            self._status.sequence = len(self._status.events)  # statuses carried before `sequence` existed
            self._ledger = Ledger(start.continued.decisions)
            self._run = start.continued.run

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, start: ProjectInput) -> ProjectStatus:
        publisher = asyncio.create_task(self._publish_outbox())
        if start.continued is not None:
            await self._carry_on()
        else:
            await self._from_proposal()
        if self._cancelled:
            await self._wind_down("the project was cancelled")
        self._finished = True
        await workflow.wait_condition(lambda: not self._outbox and workflow.all_handlers_finished())
        publisher.cancel()
        return self._status

    async def _from_proposal(self) -> None:
        p = self._proposal
        self._emit(
            ev.Proposed,
            title=p.title,
            borrower=p.borrower,
            country=p.country,
            sector=p.sector,
            contract=p.contract,
            financing=p.financing,
        )
        self._set_search_attributes()
        screening = await workflow.execute_activity(
            SCREEN_PROPOSAL,
            ScreenProposal(proposal=p),
            result_type=ScreeningResult,
            start_to_close_timeout=timedelta(seconds=30),
        )
        self._status.contract_usd = screening.contract_usd
        if not self._cancelled:
            if screening.eligible:
                self._emit(ev.ScreeningPassed, contract_usd=str(screening.contract_usd), rate_date=screening.rate_date)
                if await self._financing() and await self._effectiveness():
                    await self._delivery()
            else:
                self._status.screening_reasons = screening.reasons
                self._enter(Stage.rejected, "Rejected at screening: " + "; ".join(screening.reasons))
                self._status.outcome = self._status.details
                self._emit(ev.ScreeningFailed, reasons=screening.reasons)

    async def _carry_on(self) -> None:
        """A continued run: the earlier one stopped in delivery, waiting for its first milestone not completed."""
        workflow.logger.info("project continued as new (run %d)", self._run, extra={"run": self._run})
        self._set_details(self._status.details)
        self._set_search_attributes()
        awaited = next(i for i, m in enumerate(self._status.milestones) if m.completed_at is None)
        await self._delivery(first=awaited)

    @property
    def _cancelled(self) -> bool:
        return self._status.stage is Stage.cancelled

    # ------------------------------------------------------------------ financing

    async def _financing(self) -> bool:
        self._enter(Stage.financing, "Financing: waiting for the institutions' decisions")
        opened = workflow.now()
        deadline = opened + timedelta(days=self._timetable.review_days)
        reminder = deadline - timedelta(days=self._timetable.reminder_days_before)
        requests = financing.requests(self._proposal)
        watchers = []
        if workflow.patched(REVIEW_CLOCKS_IN_PROJECT):
            # Each review's reminder and deadline are timers of this workflow: a decision is then accepted or
            # refused in the project's own task (no Signal to a child, no child task, no second task of the
            # project), and a decision and an expiry can never both win, because both are judged in this one
            # single-threaded workflow, each against the review's status, with nothing awaited in between.
            self._clocks_in_project = True
            for institution, requested in requests:
                self._open(institution, requested, opened, deadline)
            watchers = [
                asyncio.create_task(self._keep_review_clock(institution, deadline, reminder))
                for institution, _ in requests
            ]
        elif workflow.patched(REVIEWS_OPEN_TOGETHER):
            # Every review is open (and takes decisions) before its clock starts; a decision that arrives before
            # its child workflow exists waits for it in _close_review.
            for institution, requested in requests:
                self._open(institution, requested, opened, deadline)
            for institution, requested in requests:
                watchers.append(await self._start_review_clock(institution, requested, deadline, reminder))
        else:
            # Projects started before the patch opened and started each review in turn.
            for institution, requested in requests:
                self._open(institution, requested, opened, deadline)
                watchers.append(await self._start_review_clock(institution, requested, deadline, reminder))
        self._refresh_financing_details()

        await self._wait_for_people(lambda: self._cancelled or financing.settled(self._status))
        if self._cancelled:
            await self._withdraw_open_reviews("the project was cancelled")
            await asyncio.gather(*watchers)
            return False
        reason = financing.failure(self._status)
        if reason is not None:
            await self._withdraw_open_reviews(reason)
            await asyncio.gather(*watchers)
            # A cancellation accepted while the other reviews were being withdrawn wins (_enter leaves no final stage).
            if not self._enter(Stage.financing_declined, f"Financing declined: {reason}"):
                return False
            self._status.outcome = reason
            await self._release_commitments(reason)
            self._emit(ev.FinancingDeclined, reason=reason)
            return False
        await asyncio.gather(*watchers)
        # A cancellation accepted while the reviews' children were ending wins over closing the package.
        return not self._cancelled and self._close_financing()

    def _open(self, institution: Institution, requested: Money, opened: datetime, deadline: datetime) -> None:
        self._status.reviews.append(
            Review(institution=institution, requested=requested, opened_at=opened, deadline=deadline)
        )
        self._emit(ev.ReviewOpened, institution=institution, requested=requested, deadline=deadline)

    async def _start_review_clock(
        self, institution: Institution, requested: Money, deadline: datetime, reminder: datetime
    ) -> asyncio.Task[None]:
        handle = await workflow.start_child_workflow(
            ReviewWorkflow.run,
            ReviewInput(
                project_id=self._proposal.project_id,
                institution=institution,
                requested=requested,
                deadline=deadline,
                reminder_at=reminder if self._timetable.reminder_days_before else None,
            ),
            id=f"{workflow.info().workflow_id}-review-{institution.value}",
            static_summary=f"{institution.display} review of {self._proposal.title}",
        )
        self._reviews[institution] = handle
        return asyncio.create_task(self._watch_review(handle))

    async def _keep_review_clock(self, institution: Institution, deadline: datetime, reminder: datetime) -> None:
        """One review's clock, kept in the project: the reminder (unless the timetable has none), then expiry at the
        deadline, unless a decision, a withdrawal or a cancellation closed the review first."""
        review = financing.review_of(self._status, institution)

        def closed() -> bool:
            return not review.status.is_open

        if self._timetable.reminder_days_before and not await wait_until_direct(closed, reminder):
            self._remind(institution)
        if not await wait_until_direct(closed, deadline):
            self._expire(review)

    def _expire(self, review: Review) -> None:
        review.status = ReviewStatus.expired
        review.decided_at = workflow.now()
        self._emit(ev.ReviewExpired, institution=review.institution, deadline=review.deadline)
        self._set_search_attributes()

    async def _watch_review(self, handle: workflow.ChildWorkflowHandle[ReviewWorkflow, ReviewResult]) -> None:
        result = await handle
        review = financing.review_of(self._status, result.institution)
        if result.expired and review.status.is_open:
            self._expire(review)

    async def _withdraw_open_reviews(self, reason: str) -> None:
        for review in self._status.reviews:
            if review.status.is_open:
                await self._close_review(review.institution, "withdrawn")
                review.status = ReviewStatus.withdrawn
                review.reason = reason
                self._emit(ev.ReviewWithdrawn, institution=review.institution, reason=reason)
        self._set_search_attributes()

    async def _close_review(self, institution: Institution, outcome: str) -> bool:
        """Tells the review it is over; False when it had already ended at its deadline."""
        if self._clocks_in_project:
            # The clock is this workflow's own timer: the review's status says it all (and the decision's rules,
            # judged right after, refuse a review that expired).
            return True
        # A decision can arrive while the review's child workflow is still being started.
        await workflow.wait_condition(lambda: institution in self._reviews)
        try:
            await self._reviews[institution].signal(ReviewWorkflow.close, ReviewClosed(outcome=outcome))
        except FailureError:
            return False
        return True

    async def _close_review_for(self, institution: Institution, outcome: str) -> None:
        if not await self._close_review(institution, outcome):
            raise Refused(
                f"the {institution.display} review closed at its deadline "
                f"({financing.review_of(self._status, institution).deadline:%Y-%m-%d %H:%M} UTC) before this decision "
                "arrived"
            )

    def _close_financing(self) -> bool:
        self._status.tranches.extend(financing.tranches(self._status, self._proposal))
        cover = next((r.approved for r in self._status.reviews if r.institution is Institution.sinosure), None)
        if not self._enter(Stage.effectiveness, "Financing closed; satisfying the conditions precedent"):
            return False
        self._emit(
            ev.FinancingClosed,
            tranches=[
                ev.TrancheSummary(institution=t.institution, facility=t.facility, amount=t.approved)
                for t in self._status.tranches
            ],
            sinosure_cover=cover,
        )
        return True

    def _refresh_financing_details(self) -> None:
        if self._status.stage is not Stage.financing:
            return
        if (details := financing.details(self._status)) is not None:
            self._set_details(details)
        self._set_search_attributes()

    # ------------------------------------------------------------------ decisions

    @workflow.update
    async def approve(self, decision: Approve) -> Receipt:
        return await self._decide(
            decision,
            financing.check_approve,
            financing.approve,
            before=lambda: self._close_review_for(decision.institution, "approved"),
            after=self._refresh_financing_details,
        )

    @approve.validator
    def _validate_approve(self, decision: Approve) -> None:
        self._validate(decision, financing.check_approve)

    @workflow.update
    async def reject(self, decision: Reject) -> Receipt:
        return await self._decide(
            decision,
            financing.check_reject,
            financing.reject,
            before=lambda: self._close_review_for(decision.institution, "rejected"),
            after=self._refresh_financing_details,
        )

    @reject.validator
    def _validate_reject(self, decision: Reject) -> None:
        self._validate(decision, financing.check_reject)

    @workflow.update
    async def request_information(self, request: RequestInformation) -> Receipt:
        return await self._decide(
            request,
            financing.check_request_information,
            financing.request_information,
            after=self._refresh_financing_details,
        )

    @request_information.validator
    def _validate_request_information(self, request: RequestInformation) -> None:
        self._validate(request, financing.check_request_information)

    @workflow.update
    async def provide_information(self, answer: ProvideInformation) -> Receipt:
        return await self._decide(
            answer,
            financing.check_provide_information,
            financing.provide_information,
            after=self._refresh_financing_details,
        )

    @provide_information.validator
    def _validate_provide_information(self, answer: ProvideInformation) -> None:
        self._validate(answer, financing.check_provide_information)

    @workflow.update
    async def satisfy_condition(self, request: SatisfyCondition) -> Receipt:
        return await self._decide(
            request,
            effectiveness.check_satisfy_condition,
            effectiveness.satisfy_condition,
            after=self._refresh_effectiveness_details,
        )

    @satisfy_condition.validator
    def _validate_satisfy_condition(self, request: SatisfyCondition) -> None:
        self._validate(request, effectiveness.check_satisfy_condition)

    @workflow.update
    async def complete_milestone(self, report: CompleteMilestone) -> Receipt:
        return await self._decide(report, check_complete_milestone, complete)

    @complete_milestone.validator
    def _validate_complete_milestone(self, report: CompleteMilestone) -> None:
        self._validate(report, check_complete_milestone)

    @workflow.update
    async def cancel(self, request: Cancel) -> Receipt:
        return await self._decide(request, cancellation.check_cancel, cancellation.cancel)

    @cancel.validator
    def _validate_cancel(self, request: Cancel) -> None:
        self._validate(request, cancellation.check_cancel)

    @workflow.signal(name=REMINDER_SIGNAL)
    def reminder_due(self, due: ReviewReminderDue) -> None:
        """A review child's reminder (projects whose reviews' clocks are child workflows)."""
        self._remind(due.institution)

    def _remind(self, institution: Institution) -> None:
        review = next((r for r in self._status.reviews if r.institution is institution), None)
        if review is not None and review.status.is_open and self._status.stage is Stage.financing:
            self._emit(ev.ReviewReminder, institution=review.institution, deadline=review.deadline)

    def _validate(self, decision: D, check: Check[D]) -> None:
        """Every Update validator: the sender's remit (the catalogue's action, for the institution it acts for),
        then (unless it is a repeat, or based on a status the project has not reached yet, which the handler waits
        for) the decision's rules."""
        kind = catalogue.kind_of(decision)
        self._check_actor(decision, kind.action, kind.institution_of(decision))
        if self._ledger.is_repeat(decision):
            return
        if not basis.reached(self._status, decision):
            raise basis.not_reached(self._status, decision)
        self._judge(decision, check)

    def _judge(self, decision: D, check: Check[D]) -> None:
        if self._status.stage.is_final:
            raise has_ended(self._status.project_id, self._status.stage)
        basis.check(self._status, decision)
        check(self._status, self._proposal, decision)
        limits.check(self._status, decision)

    async def _decide(
        self,
        decision: D,
        check: Check[D],
        apply: Apply[D],
        before: Callable[[], Awaitable[None]] | None = None,
        after: Callable[[], None] | None = None,
    ) -> Receipt:
        """Every Update handler: applies the decision in one synchronous step (the single writer of its changes) and
        answers in that same step, with a receipt that shows the stage and sequence the decision left the project in.

        Nothing is awaited after the decision is applied: a handler that answered later (after the decision's
        effects) would answer before or after the outbox publisher's next command depending on how the SDK groups
        an Update with the activity result before it, which differs between the worker that takes the task and any
        later replay (a nondeterminism error; seen with receipts that waited). Clients follow the effects with
        `await_progress`. Likewise no timer is started before it: the validator refuses a basis not reached yet
        (the edge sends again), and the wait here only happens in a replay that applies the Update ahead of the
        events its validator had seen."""
        if (receipt := self._ledger.repeat(decision)) is not None:
            return receipt
        if not basis.reached(self._status, decision):
            await workflow.wait_condition(lambda: basis.reached(self._status, decision))
        if before is not None:
            await before()
            if (receipt := self._ledger.repeat(decision)) is not None:
                return receipt
        self._judge(decision, check)
        change = apply(self._status, decision, self._who(decision), workflow.now())
        if change.stage is not None:
            self._enter(change.stage, change.details or self._status.details)
        sequence = self._emit(change.event, **change.fields)
        if after is not None:
            after()
        receipt = Receipt(
            decision_id=decision.decision_id,
            message=change.message,
            event_sequence=sequence,
            stage=self._status.stage,
            sequence=self._status.sequence,
        )
        return self._ledger.remember(decision, receipt)

    # ------------------------------------------------------------------ effectiveness

    async def _effectiveness(self) -> bool:
        self._status.conditions.extend(effectiveness.conditions_precedent(self._status))
        deadline = workflow.now() + timedelta(days=self._timetable.effectiveness_days)
        self._status.effectiveness_deadline = deadline
        self._refresh_effectiveness_details()
        await self._wait_for_people(
            lambda: self._cancelled or all(c.satisfied_at for c in self._status.conditions), deadline, direct=False
        )
        if self._cancelled:
            return False
        outstanding = effectiveness.outstanding(self._status)
        if outstanding:
            reason = f"conditions precedent not satisfied by {deadline:%Y-%m-%d}: {', '.join(outstanding)}"
            if not self._enter(Stage.lapsed, f"Lapsed: {reason}"):
                return False
            self._status.outcome = reason
            await self._release_commitments(reason)
            self._emit(ev.EffectivenessLapsed, outstanding_conditions=outstanding)
            return False
        if not self._enter(Stage.delivery, "Effective: delivering the milestones"):
            return False
        self._emit(ev.ProjectEffective)
        return True

    def _refresh_effectiveness_details(self) -> None:
        self._set_details(effectiveness.details(self._status))

    # ------------------------------------------------------------------ delivery

    async def _delivery(self, first: int = 0) -> None:
        for milestone in self._status.milestones[first:]:
            if self._cancelled:
                # A milestone certified before the cancellation is owed, even when the cancellation came while an
                # earlier one was being paid (receipts answer at the decision, so a contractor can certify several
                # and the project be cancelled before the first is paid); the commitments go back only after.
                if milestone.completed_at is None or not workflow.patched(CERTIFIED_MILESTONES_PAID):
                    return
            else:
                if milestone.kind is MilestoneKind.final_acceptance and self._status.warranty_over_at is None:
                    await self._warranty()
                    if self._cancelled:
                        return
                self._set_details(f"Delivery: waiting for '{milestone.title}' ({milestone.milestone_id})")
                await self._await_milestone(milestone)
                if milestone.completed_at is None:
                    return
            # A certified milestone is owed even if a cancellation arrives while it is being paid.
            await self._disburse(milestone)
        if self._cancelled:
            return  # cancelled while the last milestone was paid: the retention goes back with the commitments
        await self._release_retention()
        if not self._enter(Stage.completed, "Completed: final acceptance certified and retention released"):
            return
        self._status.outcome = "final acceptance certified"
        self._emit(ev.ProjectCompleted)

    def _completed_or_cancelled(self, milestone: Milestone) -> Callable[[], bool]:
        return lambda: self._cancelled or milestone.completed_at is not None

    async def _await_milestone(self, milestone: Milestone) -> None:
        """Waits for the milestone, reminding the contractor every `milestone_reminder_days` while it is awaited.

        A late project can wait years: this loop is the one place where a project's history grows with time rather
        than with decisions, so it is where the project continues as new.
        """
        done = self._completed_or_cancelled(milestone)
        if milestone.awaited_since is None:
            milestone.awaited_since = workflow.now()
        every = self._timetable.milestone_reminder_days
        if not every or not workflow.patched(MILESTONE_REMINDERS):
            await self._wait_for_people(done)
            return
        interval = timedelta(days=every)
        while True:
            if await self._wait_for_people(done, milestone.awaited_since + interval * (milestone.reminders + 1)):
                return
            # One reminder per interval; intervals missed while no worker ran are counted, not sent one by one.
            milestone.reminders = max(milestone.reminders + 1, (workflow.now() - milestone.awaited_since) // interval)
            self._emit(
                ev.MilestoneReminder,
                milestone_id=milestone.milestone_id,
                title=milestone.title,
                awaited_since=milestone.awaited_since,
                reminder=milestone.reminders,
            )
            self._set_details(
                f"Delivery: waiting for '{milestone.title}' ({milestone.milestone_id}) since "
                f"{milestone.awaited_since:%Y-%m-%d}; reminder {milestone.reminders} sent"
            )
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._continue_after:
                await self._continue_as_new(done)

    async def _continue_as_new(self, done: Callable[[], bool]) -> None:
        """Continues as new once every event is published and no decision is being handled; returns (and the
        project goes on in this run) if the milestone was completed or the project cancelled in the meantime."""
        # Progress waits answer now (`reached` False): the next run takes them again.
        self._closing = True
        await workflow.wait_condition(lambda: not self._outbox and workflow.all_handlers_finished())
        self._closing = False
        if done():
            return
        workflow.logger.info(
            "project continues as new after %d history events", workflow.info().get_current_history_length()
        )
        workflow.continue_as_new(
            ProjectInput(
                proposal=self._proposal,
                timetable=self._timetable,
                trusted_keys=self._trusted_keys,
                continue_as_new_after_events=self._continue_after,
                continued=Continued(status=self._status, decisions=self._ledger.remembered(), run=self._run + 1),
            )
        )

    async def _warranty(self) -> None:
        provisional = next((m for m in self._status.milestones if m.kind is MilestoneKind.provisional_acceptance), None)
        start = provisional.completed_at if provisional and provisional.completed_at else workflow.now()
        ends = add_months(start, self._timetable.warranty_months)
        self._status.warranty_ends_at = ends
        if not self._enter(Stage.warranty, f"Warranty period until {ends:%Y-%m-%d}; final acceptance follows it"):
            return
        self._emit(ev.WarrantyStarted, ends_at=ends)
        await self._wait_for_people(lambda: self._cancelled, ends, direct=False)
        if not self._cancelled:
            self._status.warranty_over_at = workflow.now()

    async def _disburse(self, milestone: Milestone) -> None:
        final = milestone.kind is MilestoneKind.final_acceptance
        for tranche in self._status.tranches:
            payment = milestone_payment(tranche, milestone.payment_share_pct, self._proposal.retention_pct, final)
            instruction = Instruction.make(
                self._proposal.project_id,
                tranche.institution,
                InstructionAction.disburse,
                payment.paid,
                milestone_id=milestone.milestone_id,
            )
            await self._send(instruction)
            tranche.disbursed = tranche.disbursed + payment.paid
            tranche.retained = tranche.retained + payment.retained
            self._status.disbursements.append(
                Disbursement(
                    milestone_id=milestone.milestone_id,
                    institution=tranche.institution,
                    paid=payment.paid,
                    retained=payment.retained,
                    instruction_id=instruction.instruction_id,
                )
            )
            self._emit(
                ev.DisbursementInstructed,
                milestone_id=milestone.milestone_id,
                institution=tranche.institution,
                paid=payment.paid,
                retained=payment.retained,
                instruction_id=instruction.instruction_id,
            )

    async def _release_retention(self) -> None:
        for tranche in self._status.tranches:
            if tranche.retained.amount == 0:
                continue
            instruction = Instruction.make(
                self._proposal.project_id, tranche.institution, InstructionAction.release_retention, tranche.retained
            )
            await self._send(instruction)
            amount = tranche.retained
            tranche.disbursed = tranche.disbursed + amount
            tranche.retained = amount.zero()
            self._emit(
                ev.RetentionReleased,
                institution=tranche.institution,
                amount=amount,
                instruction_id=instruction.instruction_id,
            )

    async def _wind_down(self, reason: str) -> None:
        await self._withdraw_open_reviews(reason)
        await self._release_commitments(reason)

    async def _release_commitments(self, reason: str) -> None:
        """Compensation: every approved commitment not drawn is given back to its institution, Sinosure's cover
        included (in proportion to the China Exim loan left undrawn, once the package had closed)."""
        cover = cancellation.cover_release(self._status)
        for tranche in cancellation.commitments(self._status):
            amount = undrawn(tranche)
            if amount.amount == 0:
                continue
            await self._send(
                Instruction.make(
                    self._proposal.project_id,
                    tranche.institution,
                    InstructionAction.release_commitment,
                    amount,
                    reason=reason,
                )
            )
            tranche.released = tranche.released + amount
            tranche.retained = amount.zero()
            self._emit(ev.CommitmentReleased, institution=tranche.institution, amount=amount, reason=reason)
        if cover is not None and cover.amount > 0 and workflow.patched(COVER_RELEASED_AFTER_CLOSING):
            sinosure = Institution.sinosure
            await self._send(
                Instruction.make(
                    self._proposal.project_id, sinosure, InstructionAction.release_commitment, cover, reason=reason
                )
            )
            self._emit(ev.CommitmentReleased, institution=sinosure, amount=cover, reason=reason)

    async def _send(self, instruction: Instruction) -> None:
        """Sends an instruction to an institution, after every event recorded before it is on Kafka: downstream
        systems never see a bank instructed about something the status topic does not show yet."""
        if workflow.patched(INSTRUCTIONS_AFTER_EVENTS) and self._outbox:
            await workflow.wait_condition(lambda: not self._outbox)
        await workflow.execute_activity(
            SEND_INSTRUCTION,
            SendInstruction(instruction=instruction),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PUBLISH_RETRY,
        )

    # ------------------------------------------------------------------ query

    @workflow.query
    def status(self) -> ProjectStatus:
        return self._status

    @workflow.update
    async def await_progress(self, wait: AwaitProgress) -> Progress:
        """Returns once the project has reached `min_sequence` or one of `stages` (or a final stage) and finished
        reacting to it (`reached`), or when the run is about to continue as new, or when the wait is released
        (`release_progress_waits`: its caller gave up) (`reached` False: ask again).

        It changes nothing and starts no timer, so however the SDK groups it with other events it makes the same
        commands (none but its answer): the caller bounds the wait (`timeout_seconds`, at the edge), and releases it
        when it gives up, so that an abandoned wait does not hold one of the project's Updates."""
        if wait.min_sequence is None and not wait.stages:
            wait = wait.model_copy(update={"min_sequence": 0})
        info = workflow.current_update_info()
        wait_id = info.id if info is not None else ""
        self._waits_taken += 1
        self._open_waits.add(wait_id)
        try:
            # A released wait answers, as a reached one does, only while the main coroutine is parked: its answer is
            # then the only command of its task, whichever way the SDK groups the events (docs/lifecycle.md).
            await workflow.wait_condition(
                lambda: self._progressed(wait) or self._closing or (wait_id in self._released_waits and self._parked())
            )
        finally:
            self._open_waits.discard(wait_id)
            self._released_waits.discard(wait_id)
        status = self._status
        return Progress(
            stage=status.stage, sequence=status.sequence, details=status.details, reached=self._progressed(wait)
        )

    @await_progress.validator
    def _validate_await_progress(self, wait: AwaitProgress) -> None:
        limits.check_wait(
            self._proposal.project_id,
            self._waits_taken,
            workflow.info().get_current_history_length(),
            self._continue_after,
        )
        if len(self._open_waits - self._released_waits) >= MAX_PROGRESS_WAITS:  # released: answering, not held
            raise Refused(
                f"{MAX_PROGRESS_WAITS} waits for project {self._proposal.project_id}'s progress are open already; "
                "try again when one has returned",
                kind=catalogue.WAITS_FULL,
            )

    @workflow.signal(name=catalogue.RELEASE_PROGRESS_WAITS)
    def release_progress_waits(self, release: ReleaseProgressWaits) -> None:
        """Ends the named waits (every open one when none is named); ids of waits already answered are ignored."""
        named = set(release.wait_ids) if release.wait_ids else set(self._open_waits)
        self._released_waits |= named & self._open_waits

    def _progressed(self, wait: AwaitProgress) -> bool:
        status = self._status
        return (
            (wait.min_sequence is not None and status.sequence >= wait.min_sequence)
            or status.stage in wait.stages
            or status.stage.is_final
        ) and self._parked()

    # ------------------------------------------------------------------ events, stages, receipts

    def _emit(self, model: type[E], **fields: Any) -> int:
        sequence = len(self._status.events) + 1
        data = model(project_id=self._proposal.project_id, sequence=sequence, stage=self._status.stage, **fields)
        # `projectrun` tells this project's events from those of a project id proposed again after its workflow was
        # deleted; the first run's id, so a project that continued as new keeps it.
        event = ev.StatusEvent.wrap(
            str(workflow.uuid4()), workflow.now(), data, projectrun=workflow.info().first_execution_run_id
        )
        self._outbox.append(event)
        self._status.events.append(
            EventRef(
                sequence=sequence,
                event_id=event.id,
                type=event.type,
                time=event.time,
                published=False,
                stage=data.stage,
                subject=basis.subject_of(data),
            )
        )
        self._status.sequence = sequence
        return sequence

    async def _publish_outbox(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            batch = self._outbox[:PUBLISH_BATCH]
            try:
                await workflow.execute_activity(
                    PUBLISH_STATUS_EVENTS,
                    PublishEvents(events=batch),
                    result_type=int,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=PUBLISH_RETRY,
                )
            except ActivityError as err:
                # Only a permanent error ends the retries (the broker can never take these records as they are).
                # The events stay first in the outbox, and instructions wait behind them: said in the status and
                # the Web UI, retried after an operator had time to act.
                cause = str(err.cause or err)
                self._status.publishing_blocked = cause
                workflow.set_current_details(f"Publishing status events is blocked: {cause}")
                workflow.logger.error("publishing status events is blocked: %s", cause)
                await workflow.sleep(BLOCKED_PUBLISH_RETRY)
                continue
            if self._status.publishing_blocked is not None:
                self._status.publishing_blocked = None
                workflow.set_current_details(self._status.details)
            del self._outbox[: len(batch)]
            for event in batch:
                self._status.events[event.data.sequence - 1].published = True
            if workflow.patched(PUBLISHED_IN_MEMO):
                # Operators see in the Web UI's memo how far the events are on Kafka. It also gives the workflow
                # task that takes the publishing result a command: temporalio 1.35.0's core, on a worker without a
                # workflow cache, hands the result of a task that made no commands to the next task together with
                # an Update, while a replay hands it over alone, and the publisher and the main coroutine then
                # issue their commands in another order (a nondeterminism error; docs/upstream-report.md).
                workflow.upsert_memo({PUBLISHED_SEQUENCE_MEMO: batch[-1].data.sequence})

    def _enter(self, stage: Stage, details: str) -> bool:
        """Moves the project to `stage`; False (and nothing changes) if it has already ended: a final stage, such
        as an accepted cancellation, is never overwritten."""
        if self._status.stage.is_final:
            workflow.logger.warning("project stays %s instead of entering %s", self._status.stage.value, stage.value)
            return False
        self._status.stage = stage
        self._status.stage_since = workflow.now()
        self._set_details(details)
        self._set_search_attributes()
        workflow.logger.info("project entered %s", stage.value, extra={"stage": stage.value})
        return True

    def _set_details(self, details: str) -> None:
        self._status.details = details
        workflow.set_current_details(details)

    def _set_search_attributes(self) -> None:
        workflow.upsert_search_attributes(visibility.updates_for(self._status))

    async def _wait_for_people(
        self, condition: Callable[[], bool], deadline: datetime | None = None, direct: bool = True
    ) -> bool:
        """Waits for decisions until `condition` holds, or until `deadline` (a durable timer; `direct=False` keeps
        the older `wait_until` for the waits that used it, so running projects replay). Meanwhile the project is
        parked: `await_progress` answers only then. Returns whether `condition` holds."""
        self._waiting = condition
        try:
            if deadline is None:
                await workflow.wait_condition(condition)
                return True
            if direct:
                return await wait_until_direct(condition, deadline)
            return await wait_until(condition, deadline)
        finally:
            self._waiting = None

    def _parked(self) -> bool:
        """The main coroutine has nothing left to do until a person decides or a timer fires."""
        return self._finished or (self._waiting is not None and not self._waiting())

    def _check_actor(self, decision: Decision, action: Action, institution: Institution | None = None) -> None:
        if not self._trusted_keys:
            return  # a project started before access control existed
        try:
            identity = remit.verify(decision, self._proposal.project_id, self._trusted_keys, workflow.now())
        except remit.NotAttested as err:
            raise NotPermitted(str(err)) from err
        if (why := remit.refusal(identity, action, institution)) is not None:
            raise NotPermitted(why)

    @staticmethod
    def _who(decision: Decision) -> str:
        """Who made the decision: the attested identity, else the name the decision gives."""
        identity = remit.claimed(decision)
        return str(identity) if identity is not None else named(decision)
