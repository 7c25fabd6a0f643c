"""Alerts for people and systems watching the portfolio: reviews near or past their deadline, projects stalled in
one stage, gaps in a project's event sequence. Each alert has a deterministic id, so repeating it is harmless."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from schemas.derived import Alert, AlertKind
from schemas.status import FINAL_STAGES
from streams.projection import Gap, ProjectView


def review_and_stall_alerts(
    views: Iterable[ProjectView], now: datetime, warn_before: timedelta, stalled_after: timedelta
) -> list[Alert]:
    alerts = []
    for view in views:
        for institution, deadline in sorted(view.open_reviews.items()):
            if deadline <= now:
                kind, text = AlertKind.review_deadline_passed, f"passed on {deadline:%Y-%m-%d}"
            elif deadline - now <= warn_before:
                kind, text = AlertKind.review_deadline_near, f"due on {deadline:%Y-%m-%d}"
            else:
                continue
            alerts.append(
                Alert(
                    alert_id=f"{view.project_id}:{kind.value}:{institution.value}:{deadline:%Y-%m-%d}",
                    kind=kind,
                    project_id=view.project_id,
                    message=f"{institution.display} review of {view.project_id} {text}",
                    raised_at=now,
                )
            )
        if view.stage not in FINAL_STAGES and view.stage_since is not None and now - view.stage_since > stalled_after:
            days = (now - view.stage_since).days
            alerts.append(
                Alert(
                    alert_id=f"{view.project_id}:{AlertKind.project_stalled.value}:{view.stage.value}:{view.stage_since:%Y-%m-%d}",
                    kind=AlertKind.project_stalled,
                    project_id=view.project_id,
                    message=f"{view.project_id} has been in {view.stage.value} for {days} days",
                    raised_at=now,
                )
            )
    return alerts


def gap_alert(gap: Gap, now: datetime) -> Alert:
    return Alert(
        alert_id=f"{gap.project_id}:{AlertKind.sequence_gap.value}:{gap.expected}",
        kind=AlertKind.sequence_gap,
        project_id=gap.project_id,
        message=f"{gap.project_id}: expected event #{gap.expected}, received #{gap.received}; later events are held",
        raised_at=now,
    )
