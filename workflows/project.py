"""One alliance project, from proposal to final acceptance: workflow id `project-<project id>`.

The workflow decides; activities act. People act through Updates whose validators refuse a bad decision
before it reaches history; every accepted decision and every transition becomes one status event, numbered
per project and queued in an outbox that a single publisher drains in order.

A project waiting years for a late milestone continues as new from its reminder loop (`_await_milestone`); the next
run starts from `ProjectInput.continued` and carries on waiting for the same milestone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

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
        Cancel,
        CompleteMilestone,
        Decision,
        Institution,
        ProvideInformation,
        Receipt,
        Reject,
        RequestInformation,
        SatisfyCondition,
    )
    from schemas.instructions import Instruction, InstructionAction
    from schemas.money import Money
    from schemas.proposal import EximFacility, MilestoneKind, Proposal
    from schemas.status import (
        Condition,
        Disbursement,
        EventRef,
        InformationRequest,
        Milestone,
        ProjectStatus,
        Review,
        ReviewStatus,
        Stage,
        Tranche,
    )
    from schemas.timetable import (
        Continued,
        ProjectInput,
        RememberedDecision,
        ReviewClosed,
        ReviewInput,
        ReviewReminderDue,
        ReviewResult,
    )
    from workflows import remit, visibility
    from workflows.deadlines import wait_until, wait_until_direct
    from workflows.delivery import add_months, milestone_payment, undrawn
    from workflows.remit import Action
    from workflows.review import REMINDER_SIGNAL, ReviewWorkflow

WORKFLOW_ID_PREFIX = "project-"
# Kafka may be down for a while: keep retrying, never give up on an event.
PUBLISH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
PUBLISH_BATCH = 100
# Patch ids (see the README's rule for changing workflow code).
MILESTONE_REMINDERS = "milestone-reminders"

E = TypeVar("E", bound=ev.EventData)


def workflow_id(project_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{project_id}"


class Refused(ApplicationError):
    """A decision the project cannot accept; the message says why in the domain's words. Retrying cannot help."""

    def __init__(self, message: str, kind: str = "DecisionRefused") -> None:
        super().__init__(message, type=kind, non_retryable=True)


class NotPermitted(Refused):
    """The sender is not who the decision needs, or cannot prove who they are."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="NotPermitted")


STANDARD_CONDITIONS: list[tuple[str, str]] = [
    ("loan-agreements-signed", "Loan agreements signed with every lending institution"),
    ("legal-opinion", "Legal opinion on the borrower's capacity and the agreements' enforceability"),
    ("down-payment-received", "The buyer's down payment received by the contractor"),
    ("sinosure-policy-issued", "Sinosure insurance policy issued"),
    ("management-fee-paid", "Management and commitment fees paid"),
]


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
        self._receipts: dict[str, tuple[str, Receipt]] = {}
        self._reviews: dict[Institution, workflow.ChildWorkflowHandle[ReviewWorkflow, ReviewResult]] = {}
        self._continue_after = start.continue_as_new_after_events
        self._run = 1
        if start.continued is not None:
            # A run that continues an earlier one: same project, same event numbering, same decisions remembered.
            self._status = start.continued.status.model_copy(deep=True)
            self._status.sequence = len(self._status.events)  # statuses carried before `sequence` existed
            self._receipts = {d.decision_id: (d.digest, d.receipt) for d in start.continued.decisions}
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

    def _requests(self) -> list[tuple[Institution, Money]]:
        f = self._proposal.financing
        requests: list[tuple[Institution, Money]] = []
        if f.cdb_loan is not None:
            requests.append((Institution.cdb, f.cdb_loan))
        if f.exim_loan is not None:
            requests.append((Institution.exim, f.exim_loan.amount))
        if f.sinosure_cover is not None:
            requests.append((Institution.sinosure, f.sinosure_cover))
        return requests

    async def _financing(self) -> bool:
        self._enter(Stage.financing, "Financing: waiting for the institutions' decisions")
        opened = workflow.now()
        deadline = opened + timedelta(days=self._timetable.review_days)
        reminder = deadline - timedelta(days=self._timetable.reminder_days_before)
        requests = self._requests()
        watchers = []
        if workflow.patched("reviews-open-before-their-clocks"):
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

        def settled() -> bool:
            statuses = [r.status for r in self._status.reviews]
            return (
                self._cancelled
                or all(s is ReviewStatus.approved for s in statuses)
                or any(s in (ReviewStatus.rejected, ReviewStatus.expired) for s in statuses)
            )

        await workflow.wait_condition(settled)
        if self._cancelled:
            await self._withdraw_open_reviews("the project was cancelled")
            await asyncio.gather(*watchers)
            return False
        failed = next(
            (r for r in self._status.reviews if r.status in (ReviewStatus.rejected, ReviewStatus.expired)), None
        )
        if failed is not None:
            how = "rejected the financing" if failed.status is ReviewStatus.rejected else "let its review expire"
            reason = f"{failed.institution.display} {how}" + (f": {failed.reason}" if failed.reason else "")
            await self._withdraw_open_reviews(reason)
            await asyncio.gather(*watchers)
            self._enter(Stage.financing_declined, f"Financing declined: {reason}")
            self._status.outcome = reason
            await self._release_commitments(reason)
            self._emit(ev.FinancingDeclined, reason=reason)
            return False
        await asyncio.gather(*watchers)
        self._close_financing()
        return True

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

    async def _watch_review(self, handle: workflow.ChildWorkflowHandle[ReviewWorkflow, ReviewResult]) -> None:
        result = await handle
        review = self._review(result.institution)
        if result.expired and review.status.is_open:
            review.status = ReviewStatus.expired
            review.decided_at = workflow.now()
            self._emit(ev.ReviewExpired, institution=review.institution, deadline=review.deadline)
            self._set_search_attributes()

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
                f"({self._review(institution).deadline:%Y-%m-%d %H:%M} UTC) before this decision arrived"
            )

    def _close_financing(self) -> None:
        for review in self._status.reviews:
            if review.institution is Institution.sinosure or review.approved is None:
                continue
            exim = self._proposal.financing.exim_loan
            self._status.tranches.append(
                Tranche(
                    institution=review.institution,
                    facility=exim.facility if review.institution is Institution.exim and exim else None,
                    approved=review.approved,
                    disbursed=review.approved.zero(),
                    retained=review.approved.zero(),
                    released=review.approved.zero(),
                )
            )
        cover = next((r.approved for r in self._status.reviews if r.institution is Institution.sinosure), None)
        self._enter(Stage.effectiveness, "Financing closed; satisfying the conditions precedent")
        self._emit(
            ev.FinancingClosed,
            tranches=[
                ev.TrancheSummary(institution=t.institution, facility=t.facility, amount=t.approved)
                for t in self._status.tranches
            ],
            sinosure_cover=cover,
        )

    def _refresh_financing_details(self) -> None:
        if self._status.stage is not Stage.financing:
            return
        pending = [r for r in self._status.reviews if r.status.is_open]
        if pending:
            deadline = min(r.deadline for r in pending)
            names = ", ".join(
                r.institution.display
                + (" (information requested)" if r.status is ReviewStatus.information_requested else "")
                for r in pending
            )
            self._set_details(f"Financing: waiting for {names}; deadline {deadline:%Y-%m-%d}")
        self._set_search_attributes()

    # ------------------------------------------------------------------ financing updates

    @workflow.update
    async def approve(self, decision: Approve) -> Receipt:
        if (receipt := self._repeat(decision)) is not None:
            return receipt
        await self._close_review_for(decision.institution, "approved")
        if (receipt := self._repeat(decision)) is not None:
            return receipt
        self._check_approve(decision)
        review = self._review(decision.institution)
        review.status = ReviewStatus.approved
        review.approved = decision.amount
        review.terms = decision.terms
        review.conditions = list(decision.conditions)
        review.decided_by = self._who(decision, decision.officer)
        review.decided_at = workflow.now()
        sequence = self._emit(
            ev.ReviewApproved,
            institution=decision.institution,
            amount=decision.amount,
            terms=decision.terms,
            conditions=list(decision.conditions),
            officer=review.decided_by,
        )
        self._refresh_financing_details()
        return self._remember(decision, f"{decision.institution.display} approved {decision.amount}", sequence)

    @approve.validator
    def _validate_approve(self, decision: Approve) -> None:
        self._check_actor(decision, Action.approve, decision.institution)
        self._check_approve(decision)

    def _check_approve(self, decision: Approve) -> None:
        if self._is_repeat(decision):
            return
        review = self._open_review(decision.institution)
        if decision.amount.currency != review.requested.currency:
            raise Refused(
                f"{decision.institution.display} was asked for {review.requested}; "
                f"an approval in {decision.amount.currency} does not match the request"
            )
        if decision.amount.amount <= 0:
            raise Refused("an approval must be for an amount above zero; to decline, reject the request")
        if decision.amount.amount > review.requested.amount:
            raise Refused(
                f"{decision.institution.display} cannot approve {decision.amount}: "
                f"only {review.requested} was requested"
            )
        exim = self._proposal.financing.exim_loan
        if (
            decision.institution is Institution.exim
            and exim is not None
            and exim.facility is EximFacility.preferential_buyers_credit
        ):
            cover = next((r for r in self._status.reviews if r.institution is Institution.sinosure), None)
            if cover is None or cover.status is not ReviewStatus.approved:
                state = "has not decided yet" if cover is None or cover.status.is_open else f"is {cover.status.value}"
                raise Refused(
                    "China Exim cannot approve a preferential buyer's credit before Sinosure has approved "
                    f"its cover; Sinosure {state}"
                )

    @workflow.update
    async def reject(self, decision: Reject) -> Receipt:
        if (receipt := self._repeat(decision)) is not None:
            return receipt
        await self._close_review_for(decision.institution, "rejected")
        if (receipt := self._repeat(decision)) is not None:
            return receipt
        self._check_reject(decision)
        review = self._review(decision.institution)
        review.status = ReviewStatus.rejected
        review.reason = decision.reason
        review.decided_by = self._who(decision, decision.officer)
        review.decided_at = workflow.now()
        sequence = self._emit(
            ev.ReviewRejected, institution=decision.institution, reason=decision.reason, officer=review.decided_by
        )
        self._refresh_financing_details()
        return self._remember(decision, f"{decision.institution.display} rejected the financing", sequence)

    @reject.validator
    def _validate_reject(self, decision: Reject) -> None:
        self._check_actor(decision, Action.reject, decision.institution)
        self._check_reject(decision)

    def _check_reject(self, decision: Reject) -> None:
        if not self._is_repeat(decision):
            self._open_review(decision.institution)

    @workflow.update
    async def request_information(self, request: RequestInformation) -> Receipt:
        if (receipt := self._repeat(request)) is not None:
            return receipt
        self._check_request_information(request)
        review = self._review(request.institution)
        request_id = f"{request.institution.value}-rfi-{len(review.information_requests) + 1}"
        review.information_requests.append(
            InformationRequest(
                request_id=request_id,
                questions=request.questions,
                asked_by=self._who(request, request.officer),
                asked_at=workflow.now(),
            )
        )
        review.status = ReviewStatus.information_requested
        sequence = self._emit(
            ev.InformationRequested,
            institution=request.institution,
            request_id=request_id,
            questions=request.questions,
            officer=self._who(request, request.officer),
        )
        self._refresh_financing_details()
        return self._remember(request, f"{request.institution.display} asked for information ({request_id})", sequence)

    @request_information.validator
    def _validate_request_information(self, request: RequestInformation) -> None:
        self._check_actor(request, Action.request_information, request.institution)
        self._check_request_information(request)

    def _check_request_information(self, request: RequestInformation) -> None:
        if self._is_repeat(request):
            return
        review = self._open_review(request.institution)
        if review.status is ReviewStatus.information_requested:
            open_request = review.information_requests[-1]
            raise Refused(
                f"{request.institution.display}'s information request {open_request.request_id} is still "
                "unanswered; wait for the contractor's answer before asking again"
            )

    @workflow.update
    async def provide_information(self, answer: ProvideInformation) -> Receipt:
        if (receipt := self._repeat(answer)) is not None:
            return receipt
        self._check_provide_information(answer)
        review = self._review(answer.institution)
        request = review.information_requests[-1]
        request.answer = answer.answer
        request.documents = list(answer.documents)
        request.answered_by = self._who(answer, answer.responder)
        request.answered_at = workflow.now()
        review.status = ReviewStatus.open
        sequence = self._emit(
            ev.InformationProvided,
            institution=answer.institution,
            request_id=request.request_id,
            responder=request.answered_by,
            documents=list(answer.documents),
        )
        self._refresh_financing_details()
        return self._remember(answer, f"answered {request.request_id}", sequence)

    @provide_information.validator
    def _validate_provide_information(self, answer: ProvideInformation) -> None:
        self._check_actor(answer, Action.provide_information)
        self._check_provide_information(answer)

    def _check_provide_information(self, answer: ProvideInformation) -> None:
        if self._is_repeat(answer):
            return
        review = self._open_review(answer.institution)
        if review.status is not ReviewStatus.information_requested:
            raise Refused(f"{answer.institution.display} has no unanswered information request")

    @workflow.signal(name=REMINDER_SIGNAL)
    def reminder_due(self, due: ReviewReminderDue) -> None:
        review = next((r for r in self._status.reviews if r.institution is due.institution), None)
        if review is not None and review.status.is_open and self._status.stage is Stage.financing:
            self._emit(ev.ReviewReminder, institution=review.institution, deadline=review.deadline)

    def _review(self, institution: Institution) -> Review:
        for review in self._status.reviews:
            if review.institution is institution:
                return review
        raise Refused(f"{institution.display} has no review in project {self._proposal.project_id}")

    def _open_review(self, institution: Institution) -> Review:
        review = next((r for r in self._status.reviews if r.institution is institution), None)
        if review is None and self._status.stage is Stage.screening:
            raise Refused(f"project {self._proposal.project_id} is still in screening: no review is open yet")
        review = self._review(institution)
        if not review.status.is_open:
            raise Refused(f"the {institution.display} review is closed: {review.status.value}")
        if self._status.stage is not Stage.financing:
            raise Refused(f"project {self._proposal.project_id} is {self._status.stage.value}: no review is open")
        return review

    # ------------------------------------------------------------------ effectiveness

    async def _effectiveness(self) -> bool:
        approved = {r.institution for r in self._status.reviews if r.status is ReviewStatus.approved}
        for condition_id, title in STANDARD_CONDITIONS:
            if condition_id == "sinosure-policy-issued" and Institution.sinosure not in approved:
                continue
            self._status.conditions.append(Condition(condition_id=condition_id, title=title, required_by="standard"))
        for review in self._status.reviews:
            for number, text in enumerate(review.conditions, start=1):
                self._status.conditions.append(
                    Condition(
                        condition_id=f"{review.institution.value}-{number}",
                        title=text,
                        required_by=review.institution.value,
                    )
                )
        deadline = workflow.now() + timedelta(days=self._timetable.effectiveness_days)
        self._status.effectiveness_deadline = deadline
        self._refresh_effectiveness_details()
        await wait_until(lambda: self._cancelled or all(c.satisfied_at for c in self._status.conditions), deadline)
        if self._cancelled:
            return False
        outstanding = [c.condition_id for c in self._status.conditions if c.satisfied_at is None]
        if outstanding:
            reason = f"conditions precedent not satisfied by {deadline:%Y-%m-%d}: {', '.join(outstanding)}"
            self._enter(Stage.lapsed, f"Lapsed: {reason}")
            self._status.outcome = reason
            await self._release_commitments(reason)
            self._emit(ev.EffectivenessLapsed, outstanding_conditions=outstanding)
            return False
        self._enter(Stage.delivery, "Effective: delivering the milestones")
        self._emit(ev.ProjectEffective)
        return True

    def _refresh_effectiveness_details(self) -> None:
        outstanding = [c.condition_id for c in self._status.conditions if c.satisfied_at is None]
        deadline = self._status.effectiveness_deadline
        self._set_details(
            f"Effectiveness: {len(outstanding)} condition(s) precedent outstanding "
            f"({', '.join(outstanding)}); deadline {deadline:%Y-%m-%d}"
            if outstanding and deadline
            else "Effectiveness: all conditions precedent satisfied"
        )

    @workflow.update
    async def satisfy_condition(self, request: SatisfyCondition) -> Receipt:
        if (receipt := self._repeat(request)) is not None:
            return receipt
        self._check_satisfy_condition(request)
        condition = next(c for c in self._status.conditions if c.condition_id == request.condition_id)
        condition.satisfied_at = workflow.now()
        condition.evidence = request.evidence
        condition.satisfied_by = self._who(request, request.by)
        sequence = self._emit(
            ev.ConditionSatisfied,
            condition_id=condition.condition_id,
            title=condition.title,
            evidence=request.evidence,
            by=condition.satisfied_by,
        )
        self._refresh_effectiveness_details()
        return self._remember(request, f"condition {condition.condition_id} satisfied", sequence)

    @satisfy_condition.validator
    def _validate_satisfy_condition(self, request: SatisfyCondition) -> None:
        self._check_actor(request, Action.satisfy_condition)
        self._check_satisfy_condition(request)

    def _check_satisfy_condition(self, request: SatisfyCondition) -> None:
        if self._is_repeat(request):
            return
        if self._status.stage is not Stage.effectiveness:
            raise Refused(
                f"project {self._proposal.project_id} is in {self._status.stage.value}: conditions precedent "
                "are satisfied during effectiveness"
            )
        condition = next((c for c in self._status.conditions if c.condition_id == request.condition_id), None)
        if condition is None:
            open_ids = ", ".join(c.condition_id for c in self._status.conditions if c.satisfied_at is None)
            raise Refused(f"unknown condition '{request.condition_id}'; outstanding: {open_ids}")
        if condition.satisfied_at is not None:
            raise Refused(
                f"condition {condition.condition_id} was already satisfied on {condition.satisfied_at:%Y-%m-%d} "
                f"with {condition.evidence}"
            )

    # ------------------------------------------------------------------ delivery

    async def _delivery(self, first: int = 0) -> None:
        for milestone in self._status.milestones[first:]:
            if self._cancelled:
                return
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
        await self._release_retention()
        self._enter(Stage.completed, "Completed: final acceptance certified and retention released")
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
            await workflow.wait_condition(done)
            return
        interval = timedelta(days=every)
        while True:
            if await wait_until_direct(done, milestone.awaited_since + interval * (milestone.reminders + 1)):
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
        await workflow.wait_condition(lambda: not self._outbox and workflow.all_handlers_finished())
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
                continued=Continued(
                    status=self._status,
                    decisions=[
                        RememberedDecision(decision_id=decision_id, digest=digest, receipt=receipt)
                        for decision_id, (digest, receipt) in self._receipts.items()
                    ],
                    run=self._run + 1,
                ),
            )
        )

    async def _warranty(self) -> None:
        provisional = next((m for m in self._status.milestones if m.kind is MilestoneKind.provisional_acceptance), None)
        start = provisional.completed_at if provisional and provisional.completed_at else workflow.now()
        ends = add_months(start, self._timetable.warranty_months)
        self._status.warranty_ends_at = ends
        self._enter(Stage.warranty, f"Warranty period until {ends:%Y-%m-%d}; final acceptance follows it")
        self._emit(ev.WarrantyStarted, ends_at=ends)
        await wait_until(lambda: self._cancelled, ends)
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

    @workflow.update
    async def complete_milestone(self, report: CompleteMilestone) -> Receipt:
        if (receipt := self._repeat(report)) is not None:
            return receipt
        self._check_complete_milestone(report)
        milestone = next(m for m in self._status.milestones if m.milestone_id == report.milestone_id)
        milestone.certificate = report.certificate
        milestone.completed_at = workflow.now()
        milestone.completed_by = self._who(report, report.by)
        sequence = self._emit(
            ev.MilestoneCompleted,
            milestone_id=milestone.milestone_id,
            milestone_kind=milestone.kind,
            certificate=report.certificate,
            by=milestone.completed_by,
        )
        return self._remember(report, f"milestone {milestone.milestone_id} completed", sequence)

    @complete_milestone.validator
    def _validate_complete_milestone(self, report: CompleteMilestone) -> None:
        self._check_actor(report, Action.complete_milestone)
        self._check_complete_milestone(report)

    def _check_complete_milestone(self, report: CompleteMilestone) -> None:
        if self._is_repeat(report):
            return
        if self._status.stage not in (Stage.delivery, Stage.warranty):
            raise Refused(
                f"project {self._proposal.project_id} is in {self._status.stage.value}: milestones are "
                "completed during delivery"
            )
        milestone = next((m for m in self._status.milestones if m.milestone_id == report.milestone_id), None)
        if milestone is None:
            known = ", ".join(m.milestone_id for m in self._status.milestones)
            raise Refused(f"unknown milestone '{report.milestone_id}'; the plan has: {known}")
        if milestone.completed_at is not None:
            raise Refused(
                f"milestone {milestone.milestone_id} was already completed on {milestone.completed_at:%Y-%m-%d}"
            )
        following = next(m for m in self._status.milestones if m.completed_at is None)
        if following is not milestone:
            raise Refused(
                f"milestone {milestone.milestone_id} cannot be completed before {following.milestone_id} "
                f"({following.title})"
            )
        if milestone.kind is MilestoneKind.final_acceptance and self._status.warranty_over_at is None:
            ends = self._status.warranty_ends_at
            until = f"until {ends:%Y-%m-%d}" if ends else "after provisional acceptance"
            raise Refused(f"final acceptance comes after the warranty period, which runs {until}")

    # ------------------------------------------------------------------ cancellation and release

    @workflow.update
    async def cancel(self, request: Cancel) -> Receipt:
        if (receipt := self._repeat(request)) is not None:
            return receipt
        self._check_cancel(request)
        stage = self._status.stage
        by = self._who(request, request.by)
        self._enter(Stage.cancelled, f"Cancelled in {stage.value} by {by}: {request.reason}")
        self._status.outcome = request.reason
        sequence = self._emit(ev.ProjectCancelled, reason=request.reason, by=by, cancelled_in=stage)
        return self._remember(request, f"project cancelled in {stage.value}", sequence)

    @cancel.validator
    def _validate_cancel(self, request: Cancel) -> None:
        self._check_actor(request, Action.cancel)
        self._check_cancel(request)

    def _check_cancel(self, request: Cancel) -> None:
        if not self._is_repeat(request) and self._status.stage.is_final:
            raise Refused(f"project {self._proposal.project_id} has already ended: {self._status.stage.value}")

    async def _wind_down(self, reason: str) -> None:
        await self._withdraw_open_reviews(reason)
        await self._release_commitments(reason)

    async def _release_commitments(self, reason: str) -> None:
        """Compensation: every approved commitment not drawn is given back to its institution."""
        tranches = self._status.tranches or [
            Tranche(
                institution=r.institution,
                approved=r.approved,
                disbursed=r.approved.zero(),
                retained=r.approved.zero(),
                released=r.approved.zero(),
            )
            for r in self._status.reviews
            if r.status is ReviewStatus.approved and r.approved is not None
        ]
        for tranche in tranches:
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

    async def _send(self, instruction: Instruction) -> None:
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

    # ------------------------------------------------------------------ events, stages, receipts

    def _emit(self, model: type[E], **fields: Any) -> int:
        sequence = len(self._status.events) + 1
        data = model(project_id=self._proposal.project_id, sequence=sequence, stage=self._status.stage, **fields)
        event = ev.StatusEvent.wrap(str(workflow.uuid4()), workflow.now(), data)
        self._outbox.append(event)
        self._status.events.append(
            EventRef(sequence=sequence, event_id=event.id, type=event.type, time=event.time, published=False)
        )
        self._status.sequence = sequence
        return sequence

    async def _publish_outbox(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            batch = self._outbox[:PUBLISH_BATCH]
            await workflow.execute_activity(
                PUBLISH_STATUS_EVENTS,
                PublishEvents(events=batch),
                result_type=int,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PUBLISH_RETRY,
            )
            del self._outbox[: len(batch)]
            for event in batch:
                self._status.events[event.data.sequence - 1].published = True

    def _enter(self, stage: Stage, details: str) -> None:
        self._status.stage = stage
        self._status.stage_since = workflow.now()
        self._set_details(details)
        self._set_search_attributes()
        workflow.logger.info("project entered %s", stage.value, extra={"stage": stage.value})

    def _set_details(self, details: str) -> None:
        self._status.details = details
        workflow.set_current_details(details)

    def _set_search_attributes(self) -> None:
        workflow.upsert_search_attributes(visibility.updates_for(self._status))

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
    def _who(decision: Decision, named: str) -> str:
        """Who made the decision: the attested identity, else the name the decision gives."""
        identity = remit.claimed(decision)
        return str(identity) if identity is not None else named

    def _is_repeat(self, decision: Decision) -> bool:
        previous = self._receipts.get(decision.decision_id)
        if previous is None:
            return False
        if previous[0] != remit.decision_digest(decision):
            raise Refused(
                f"decision id {decision.decision_id} was already used for a different decision "
                f"({previous[1].message}); a new decision needs a new id"
            )
        return True

    def _repeat(self, decision: Decision) -> Receipt | None:
        if self._is_repeat(decision):
            return self._receipts[decision.decision_id][1]
        return None

    def _remember(self, decision: Decision, message: str, sequence: int) -> Receipt:
        decision_id = decision.decision_id
        receipt = Receipt(decision_id=decision_id, message=message, event_sequence=sequence)
        self._receipts[decision_id] = (remit.decision_digest(decision), receipt)
        return receipt
