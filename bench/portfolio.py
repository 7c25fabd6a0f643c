"""What the stream worker's leader does at each tick, without Kafka: the portfolio computed from every view (the
former tick) next to the portfolio kept one changed view at a time (`streams.portfolio.LivePortfolio`), and the
alerts, which still go through every view.

    .venv/bin/python -m bench.portfolio [--projects 14286] [--changed 357]

`--changed`: the views that change between two ticks (357 is about what 500 events/s bring in a 2 s tick, 7 events
per project). Prints CPU milliseconds (process time) per tick.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from alliance.settings import Settings
from bench.events import project_stream
from schemas.status import Stage
from streams.app import open_alerts
from streams.portfolio import LivePortfolio, compute
from streams.projection import ProjectView, fold


def views_of(projects: int) -> list[ProjectView]:
    found = []
    for n in range(projects):
        view: ProjectView | None = None
        for event in project_stream(f"bench-{n}", ("KE", "ZM", "NG", "TH")[n % 4]):
            view = fold(view, event).view
        assert view is not None
        found.append(view)
    return found


def main(projects: int, changed: int) -> None:
    settings = Settings()
    rules = settings.eligibility_rules()
    views = views_of(projects)
    started = time.process_time()
    compute(views, rules.usd_per_unit, rules.rate_date)
    every = time.process_time() - started
    live = LivePortfolio(rules.usd_per_unit, rules.rate_date)
    for view in views:
        live.update(view)
    moved = [
        v.model_copy(update={"stage": Stage.delivery if v.stage is Stage.financing else Stage.financing})
        for v in views[:changed]
    ]
    started = time.process_time()
    for view in moved:
        live.update(view)
    live.portfolio()
    kept = time.process_time() - started
    started = time.process_time()
    open_alerts(views, settings, datetime.now(UTC))
    alerts = time.process_time() - started
    print(f"{projects:,} projects, {changed:,} changed since the last tick; CPU ms per tick:")
    print(f"{'portfolio from every view (before)':<44}{every * 1000:>10.0f}")
    print(f"{'portfolio kept per changed view (now)':<44}{kept * 1000:>10.0f}")
    print(f"{'alerts over every view':<44}{alerts * 1000:>10.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=14286)
    parser.add_argument("--changed", type=int, default=357)
    args = parser.parse_args()
    main(args.projects, args.changed)
