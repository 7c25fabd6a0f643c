"""Folding status events into project views: order, duplicates and gaps."""

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.settings import DEFAULT_RATES
from schemas.decisions import Institution
from schemas.derived import AlertKind, Dimension
from schemas.status import Stage
from streams.alerts import review_and_stall_alerts
from streams.portfolio import LivePortfolio, compute
from streams.projection import ProjectView, fold
from tests.streams.events import START, project_stream

RATES = {code: Decimal(rate) for code, rate in DEFAULT_RATES.items()}


def fold_all(events: list, views: dict[str, ProjectView] | None = None) -> dict[str, ProjectView]:
    views = dict(views or {})
    for event in events:
        views[event.subject] = fold(views.get(event.subject), event).view
    return views


def test_a_project_is_folded_into_its_current_state() -> None:
    view = fold_all(project_stream("ke-p1"))["ke-p1"]
    assert view.stage is Stage.delivery and view.last_sequence == 7
    assert view.amounts[Institution.cdb].approved is not None
    assert view.amounts[Institution.cdb].disbursed is not None
    assert view.amounts[Institution.cdb].disbursed.amount == Decimal("3825000.00")
    assert view.open_reviews == {}


def test_a_repeated_event_is_a_duplicate_and_changes_nothing() -> None:
    stream = project_stream("ke-p1")
    view = fold_all(stream)["ke-p1"]
    again = fold(view, stream[6])
    assert again.duplicate and again.applied == [] and again.view == view


def test_an_event_after_a_gap_is_held_and_reported_then_applied_in_order() -> None:
    stream = project_stream("ke-p1")
    view = fold_all(stream[:3])["ke-p1"]
    ahead = fold(view, stream[4])
    assert ahead.gap is not None and (ahead.gap.expected, ahead.gap.received) == (4, 5)
    assert ahead.applied == [] and ahead.view.last_sequence == 3
    filled = fold(ahead.view, stream[3])
    assert [e.data.sequence for e in filled.applied] == [4, 5]
    assert filled.view.last_sequence == 5 and filled.view.held == {}


@settings(max_examples=200)
@given(st.data())
def test_any_order_with_any_duplicates_gives_the_fresh_result(data: st.DataObject) -> None:
    """What a restarted or rebalanced worker sees: records again, and projects interleaved differently."""
    streams = [
        project_stream("ke-p1", "KE"),
        project_stream("zm-p2", "ZM", approve_cdb=False),
        project_stream("ke-p3", "KE"),
    ]
    fresh = fold_all([e for s in streams for e in s])
    replayed = [e for s in streams for e in s] + data.draw(st.lists(st.sampled_from([e for s in streams for e in s])))
    shuffled = data.draw(st.permutations(replayed))
    assert fold_all(shuffled) == fresh


def test_the_portfolio_sums_each_dimension_in_usd() -> None:
    views = fold_all([*project_stream("ke-p1", "KE"), *project_stream("zm-p2", "ZM", approve_cdb=False)])
    portfolio = compute(views.values(), RATES, date(2026, 11, 2))
    kenya = portfolio.by[Dimension.country]["KE"]
    assert kenya.projects_by_stage == {"delivery": 1}
    assert kenya.approved_usd == Decimal("42500000.00") and kenya.disbursed_usd == Decimal("3825000.00")
    zambia = portfolio.by[Dimension.country]["ZM"]
    assert zambia.projects_by_stage == {"financing": 1} and zambia.approved_usd == 0
    cdb = portfolio.by[Dimension.institution]["cdb"]
    assert cdb.requested_usd == Decimal("85000000.00") and cdb.approved_usd == Decimal("42500000.00")


def versions(events: list) -> list[ProjectView]:
    """A project's view after each of its events (what the changelog holds over time)."""
    view: ProjectView | None = None
    found = []
    for event in events:
        view = fold(view, event).view
        found.append(view)
    return found


@settings(max_examples=100)
@given(st.data())
def test_the_portfolio_kept_one_changed_view_at_a_time_equals_the_portfolio_computed_afresh(
    data: st.DataObject,
) -> None:
    """What the leader does: each view the mirror replaces is counted again, in any order, with repeats, a stale
    version coming back, and a project id proposed again in another country (its first country's entry must go)."""
    histories = {
        "ke-p1": versions(project_stream("ke-p1", "KE")),
        "zm-p2": versions(project_stream("zm-p2", "ZM", approve_cdb=False)),
        "ke-p3": versions(project_stream("ke-p3", "KE", run="run-1") + project_stream("ke-p3", "NG", run="run-2")),
    }
    updates = data.draw(
        st.lists(st.tuples(st.sampled_from(sorted(histories)), st.integers(0, 13)), min_size=1, max_size=40)
    )
    live = LivePortfolio(RATES, date(2026, 11, 2))
    latest: dict[str, ProjectView] = {}
    for project, n in updates:
        view = histories[project][min(n, len(histories[project]) - 1)]
        live.update(view)
        latest[project] = view
    assert live.portfolio() == compute(latest.values(), RATES, date(2026, 11, 2))
    for project, history in histories.items():  # then every project at its last view
        live.update(history[-1])
        latest[project] = history[-1]
    final = live.portfolio()
    assert final == compute(latest.values(), RATES, date(2026, 11, 2))
    assert "KE" in final.by[Dimension.country] and "NG" in final.by[Dimension.country]
    assert final.by[Dimension.country]["KE"].projects_by_stage == {"delivery": 1}  # ke-p3 moved to Nigeria


def test_reviews_near_or_past_their_deadline_and_stalled_projects_raise_alerts() -> None:
    views = fold_all(project_stream("zm-p2", approve_cdb=False))
    near = review_and_stall_alerts(views.values(), START + timedelta(days=27), timedelta(days=5), timedelta(days=60))
    assert [a.kind for a in near] == [AlertKind.review_deadline_near]
    late = review_and_stall_alerts(views.values(), START + timedelta(days=61), timedelta(days=5), timedelta(days=60))
    assert {a.kind for a in late} == {AlertKind.review_deadline_passed, AlertKind.project_stalled}
    assert len({a.alert_id for a in late}) == 2
    calm = review_and_stall_alerts(views.values(), START + timedelta(days=1), timedelta(days=5), timedelta(days=60))
    assert calm == []


def test_a_project_id_proposed_again_by_another_run_starts_its_view_afresh() -> None:
    first = project_stream("ke-reused", "KE", run="run-1")
    second = project_stream("ke-reused", "ZM", approve_cdb=False, run="run-2")
    view = fold_all(first + second)["ke-reused"]
    assert (view.country, view.run, view.incarnation) == ("ZM", "run-2", 1)
    assert view == fold_all(second)["ke-reused"].model_copy(update={"incarnation": 1})
    assert fold(view, second[1]).duplicate  # the new run's own repeats are still duplicates


def test_events_without_a_run_belong_to_the_views_run_and_a_later_run_id_is_adopted() -> None:
    legacy = project_stream("ke-legacy", "KE")
    tagged = project_stream("ke-legacy", "KE", run="run-1")
    # A workflow that starts putting its run id on events mid-project (a new worker version): the same project.
    view = fold_all(legacy[:3] + tagged[3:])["ke-legacy"]
    assert (view.last_sequence, view.run, view.incarnation) == (len(legacy), "run-1", 0)
    # The id proposed again afterwards by a run that says so: a new incarnation, not duplicates.
    again = fold_all(legacy + project_stream("ke-legacy", "ZM", run="run-2")[:2])["ke-legacy"]
    assert (again.country, again.last_sequence, again.incarnation) == ("ZM", 2, 1)
