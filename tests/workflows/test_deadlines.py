"""Deadlines of days and months on durable timers, under the time-skipping test server (a fresh one per test)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from alliance.demo import Driver
from alliance.event_feed import project_events
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from schemas.decisions import Institution
from schemas.status import ReviewStatus, Stage
from tests.conftest import time_skipping_projects
from tests.support import example, finished, follow_server_clock
from tests.workflows.driving import ProjectDriver
from workflows.financing import review_of

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def skipping(settings: Settings) -> AsyncIterator[tuple[WorkflowEnvironment, Projects]]:
    async with time_skipping_projects(settings) as skipping:
        yield skipping


async def test_an_unanswered_review_is_reminded_then_expires_and_financing_is_declined(
    skipping: tuple[WorkflowEnvironment, Projects],
) -> None:
    env, projects = skipping
    proposal = example("zm-lusaka-smart-city-2", "zm-expiry")
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.sinosure, "Wang Fang")
    await d.approve(Institution.exim, "Chen Jie")
    await env.sleep(timedelta(days=24))
    assert (await projects.status(proposal.project_id)).stage is Stage.financing

    await env.sleep(timedelta(days=7))
    status = await finished(projects, proposal.project_id)

    assert status.stage is Stage.financing_declined
    cdb = next(r for r in status.reviews if r.institution is Institution.cdb)
    assert cdb.status is ReviewStatus.expired
    assert cdb.decided_at is not None and cdb.decided_at >= cdb.deadline
    assert status.outcome == "China Development Bank let its review expire"
    kinds = [e.data.kind for e in await project_events(projects.settings, proposal.project_id)]
    # One reminder (only CDB was still deciding 5 days before the deadline), then expiry and compensation.
    assert kinds.count("review_reminder") == 1
    assert kinds[-4:] == ["review_expired", "commitment_released", "commitment_released", "financing_declined"]


async def test_conditions_precedent_not_met_in_time_lapse_the_project(
    skipping: tuple[WorkflowEnvironment, Projects],
) -> None:
    env, projects = skipping
    proposal = example("ke-national-data-centre-2", "ke-lapse")
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.exim, "Chen Jie")
    await d.wait(lambda s: s.stage is Stage.effectiveness)
    await d.satisfy("legal-opinion")
    await env.sleep(timedelta(days=181))

    status = await finished(projects, proposal.project_id)

    assert status.stage is Stage.lapsed
    assert status.outcome is not None and "loan-agreements-signed" in status.outcome
    assert "legal-opinion" not in status.outcome
    (tranche,) = status.tranches
    assert tranche.released == tranche.approved


async def test_final_acceptance_waits_for_the_twelve_month_warranty(
    skipping: tuple[WorkflowEnvironment, Projects],
) -> None:
    env, projects = skipping
    proposal = example("my-smart-homes-pilot", "my-warranty")
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.cdb, "Liu Yang")
    await d.satisfy_all()
    for milestone in ("survey", "procurement", "installation", "commissioning", "training", "provisional"):
        await d.complete(milestone)
    status = await d.wait(lambda s: s.stage is Stage.warranty)
    assert status.warranty_ends_at is not None
    provisional = next(m for m in status.milestones if m.milestone_id == "provisional")
    assert provisional.completed_at is not None
    assert timedelta(days=365) <= status.warranty_ends_at - provisional.completed_at <= timedelta(days=366)

    with pytest.raises(UserError, match=f"warranty period, which runs until {status.warranty_ends_at:%Y-%m-%d}"):
        await d.report_milestone("final")

    await env.sleep(timedelta(days=367))
    await follow_server_clock(env, projects)
    await d.complete("final")
    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.completed
    assert status.warranty_over_at is not None and status.warranty_over_at >= status.warranty_ends_at


# Offsets from the review's deadline at which the last decision is sent, each twice. Not 0: there the decision's
# task cancels the deadline's timer just as it fires, which the time-skipping test server refuses ("invalid history
# builder state for action", temporalio/sdk-java#3088: the run is stranded). The Temporal server takes that
# cancellation ("timer deletion is a success, we may have deleted a fired timer": the decision wins), and the
# workflow judges decision and expiry in one thread either way; the margins keep the test server off that path.
DEADLINE_OFFSETS_S = [-10, -3, 3, 10] * 2


async def test_a_decision_and_its_reviews_expiry_never_both_win(
    skipping: tuple[WorkflowEnvironment, Projects],
) -> None:
    """The review's clock is the project's own timer: on either side of the deadline, each run is either an
    approval (the package closes, nothing expired) or a refusal that names the expiry (financing declined, the
    approvals released): never an accepted decision that the project then treats as expired, nor the reverse."""
    env, projects = skipping
    outcomes: dict[int, list[str]] = {}
    for n, offset in enumerate(DEADLINE_OFFSETS_S):
        d = ProjectDriver(projects, example("zm-lusaka-smart-city-2", f"zm-deadline-race-{n}"))
        await d.start()
        await d.progress(Stage.financing)
        await d.approve(Institution.sinosure)
        await d.approve(Institution.exim)
        cdb = next(r for r in (await d.status()).reviews if r.institution is Institution.cdb)
        await env.sleep(cdb.deadline - await env.get_current_time() + timedelta(seconds=offset))
        await follow_server_clock(env, projects)
        try:
            receipt = await d.approve(Institution.cdb)
        except UserError as refusal:
            # Refused by the open project (its review expired) or, once the expiry ended it, by the edge.
            assert re.search(r"review is closed: expired at its deadline|ended \(financing_declined\)", str(refusal))
            status = await finished(projects, d.pid)
            assert status.stage is Stage.financing_declined
            assert review_of(status, Institution.cdb).status is ReviewStatus.expired
            assert all(t.released == t.approved for t in status.tranches)
            outcome = "expired"
        else:
            assert receipt.message.startswith("China Development Bank approved")
            await d.progress(Stage.effectiveness)
            await d.cancel()
            status = await finished(projects, d.pid)
            assert status.stage is Stage.cancelled
            assert review_of(status, Institution.cdb).status is ReviewStatus.approved
            outcome = "approved"
        kinds = [e.data.kind for e in await project_events(projects.settings, d.pid)]
        assert kinds.count("review_expired") == (outcome == "expired")
        assert ("financing_closed" in kinds) == (outcome == "approved")
        outcomes.setdefault(offset, []).append(outcome)
    print("outcomes by offset from the deadline (s):", outcomes)
    assert {offset: set(seen) for offset, seen in outcomes.items()} == {
        offset: {"approved" if offset < 0 else "expired"} for offset in DEADLINE_OFFSETS_S
    }
