"""Records the histories the replay tests replay: every demo path, run on a fresh dev server and the test broker.

Run with `make histories` after a deliberate workflow change (with its `workflow.patched` guard), and commit the
files under `current/`. Histories of earlier code stay in their own folders, each from before a patch:
`before-access-control/` (decisions without attestations), `before-reviews-open-together/`
(`reviews-open-before-their-clocks`), `before-milestone-reminders/` (`milestone-reminders`),
`before-instructions-after-events/` (`instructions-after-events`, `cover-released-after-closing`),
`before-certified-milestones-paid/` (`certified-milestones-paid-after-cancel`), `before-published-sequence-memo/`
(`published-sequence-in-memo`), `before-review-clocks-in-project/` (`review-clocks-in-project`: until then each
review's clock was a child workflow, whose histories are there too):
replaying them against new code is what catches a change that would break projects already running.

`current/` also holds every run of a project that continued as new (`project-ke-late-delivery-run-<n>`), recorded on
a time-skipping server: a milestone a year late, reminded weekly, with a history limit of 200 events. `python -m
tests.histories.record waits_released` records one scenario (`record_waits_released`) alone. `current/` also holds a
project whose CDB review was reminded, then expired at its deadline (`project-zm-review-expired`), recorded there too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from alliance.demo import run_demo
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from schemas.decisions import AwaitProgress, Institution
from schemas.status import Stage
from tests.conftest import time_skipping_projects
from tests.support import drive_late_delivery, example, finished, local_temporal, runs_of
from tests.workflows.driving import ProjectDriver, leave_waits_open
from workflows.project import MAX_PROGRESS_WAITS, workflow_id

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
KAFKA_PORT = int(os.environ.get("ALLIANCE_TEST_KAFKA_PORT", "29092"))  # as the tests (tests/conftest.py)


async def record(only: str | None = None) -> list[Path]:
    """Every scenario (or only the one named `only`: a function of this module, `record_<only>`), its histories
    written to `current/`."""
    env = {
        **os.environ,
        "ALLIANCE_STATE_DIR": str(ROOT / ".state" / "test"),
        "ALLIANCE_KAFKA_PORT": str(KAFKA_PORT),
        "ALLIANCE_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
        "ALLIANCE_VENV": str(BIN.parent),
    }
    subprocess.run(["bash", str(ROOT / "deploy/local/services.sh"), "start", "kafka"], env=env, check=True)
    try:
        async with await local_temporal() as temporal:
            run = uuid.uuid4().hex[:8]
            settings = Settings(
                temporal_address=temporal.client.service_client.config.target_host,
                task_queue=f"record-{run}",
                kafka_bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}",
                status_topic=f"record.status.{run}",
                instruction_topic=f"record.instructions.{run}",
                signing_key_file=ROOT / ".state" / "test" / "keys" / "edge-ed25519.pem",
            )
            async with project_worker(temporal.client, settings):
                projects = Projects(temporal.client, settings, Edge(settings))
                if only is not None:
                    await globals()[f"record_{only}"](projects)
                else:
                    for line in await run_demo(projects):
                        print(line)
                    await record_cancelled_while_paying(projects)
                    await record_waits_released(projects)
                written: list[Path] = []
                async for execution in temporal.client.list_workflows():
                    history = await temporal.client.get_workflow_handle(execution.id).fetch_history()
                    path = HERE / "current" / f"{execution.id}.json"
                    path.parent.mkdir(exist_ok=True)
                    path.write_text(history.to_json() + "\n")
                    written.append(path)
            if only is None:
                written += await record_continued(settings)
                written += await record_expired(settings)
            return written
    finally:
        subprocess.run(["bash", str(ROOT / "deploy/local/services.sh"), "stop", "kafka"], env=env)


async def record_cancelled_while_paying(projects: Projects) -> None:
    """Three milestones certified back to back, then a cancellation before the first is paid: the ones certified
    are paid (`certified-milestones-paid-after-cancel`), then the commitments go back, Sinosure's cover with the
    China Exim loan's undrawn part (`cover-released-after-closing`)."""
    d = ProjectDriver(projects, example("et-cloud-finance", "et-cloud-finance-cancelled-while-paying"))
    await d.into_delivery()
    for milestone in d.proposal.milestones[:3]:
        await d.complete(milestone.id)
    await d.cancel()
    status = await finished(projects, d.pid)
    paid = {payment.milestone_id for payment in status.disbursements}
    if paid != {m.id for m in d.proposal.milestones[:3]}:
        raise SystemExit(f"the cancellation did not come while milestones were being paid ({paid}): record again")


async def record_waits_released(projects: Projects) -> None:
    """Progress waits given up (the edge releases them: `release_progress_waits`) and a wait whose caller vanished
    (released by the edge when a new wait finds the project's waits full), between decisions, then a cancellation."""
    d = ProjectDriver(projects, example("et-cloud-finance", "et-waits-released"))
    await d.start()
    await d.progress(Stage.financing)
    for _ in range(2):
        await projects.await_progress(d.pid, AwaitProgress(min_sequence=999, timeout_seconds=0.5))
    receipt = await d.approve(Institution.sinosure)
    await leave_waits_open(projects.client, d.pid, [f"vanished-{n}" for n in range(MAX_PROGRESS_WAITS)])
    await projects.await_progress(d.pid, AwaitProgress(min_sequence=receipt.sequence, timeout_seconds=30))
    await d.cancel()
    await finished(projects, d.pid)


async def record_continued(settings: Settings) -> list[Path]:
    settings = settings.model_copy(update={"continue_as_new_after_events": 200})
    proposal = example("ke-national-data-centre-2", "ke-late-delivery")
    async with time_skipping_projects(settings) as (env, projects):
        late = await drive_late_delivery(env, projects, proposal, every=7, days=364)
        for milestone in proposal.milestones[1:]:
            await late.driver.complete(milestone.id)
        await finished(projects, proposal.project_id)
        histories = await runs_of(env.client, workflow_id(proposal.project_id), late.first_run)
    written = []
    for number, history in enumerate(histories, start=1):
        path = HERE / "current" / f"{workflow_id(proposal.project_id)}-run-{number}.json"
        path.write_text(history.to_json() + "\n")
        written.append(path)
    return written


async def record_expired(settings: Settings) -> list[Path]:
    """Two approvals, then CDB lets its review be reminded and expire: the other reviews' clocks stop, the
    approved commitments are released and financing is declined."""
    proposal = example("zm-lusaka-smart-city-2", "zm-review-expired")
    async with time_skipping_projects(settings) as (env, projects):
        d = ProjectDriver(projects, proposal)
        await d.start()
        await d.progress(Stage.financing)
        await d.approve(Institution.sinosure)
        await d.approve(Institution.exim)
        await env.sleep(timedelta(days=31))
        status = await finished(projects, proposal.project_id)
        if status.stage is not Stage.financing_declined:
            raise SystemExit(f"the CDB review did not expire ({status.stage.value}): record again")
        history = await env.client.get_workflow_handle(workflow_id(proposal.project_id)).fetch_history()
    path = HERE / "current" / f"{workflow_id(proposal.project_id)}.json"
    path.write_text(history.to_json() + "\n")
    return [path]


if __name__ == "__main__":
    for path in asyncio.run(record(sys.argv[1] if len(sys.argv) > 1 else None)):
        print(f"wrote {path.relative_to(ROOT)}")
    sys.stdout.flush()
    os._exit(0)
