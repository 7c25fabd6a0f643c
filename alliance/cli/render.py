"""What the command line shows: receipts, statuses, lists.

Everything printed passes through a `Terminal`: text that came from people (titles, reasons, names, answers) is
shown as written, never read as rich markup (a reason with `[/]` in it stopped `alliance status` with a traceback),
and its control characters are written out (`\\x1b`), so a decision's text cannot recolour, retitle or rewrite
another user's terminal. Styles are given as styles, never as markup in a string.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from alliance.projects import InboxPage, ProjectRow, Started
from schemas.decisions import Progress, Receipt
from schemas.status import Milestone, ProjectStatus

# Columns assumed when the output is not a terminal and COLUMNS is not set.
PIPED_WIDTH = 400

# C0 and C1 control characters, DEL; line feed and tab stay (they lay text out, they do not control the terminal).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with its control characters written out as Python writes them (ESC as `\\x1b`, CR as `\\x0d`)."""
    return CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


class Terminal(Console):
    """A rich console that prints strings as they are (no markup) with their control characters written out."""

    def __init__(self, **options: Any) -> None:
        stream = sys.stderr if options.get("stderr") else sys.stdout
        if not stream.isatty() and "COLUMNS" not in os.environ:
            # Piped (a script, a file): rich would assume 80 columns and cut table cells ('ng-publi…'). Tables take
            # the width their content needs, up to this; set COLUMNS to choose another.
            options.setdefault("width", PIPED_WIDTH)
        super().__init__(markup=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(visible(text), **options)


out = Terminal()
errors = Terminal(stderr=True)


def error(message: str) -> None:
    """The one `error:` line of a command that could not do what was asked."""
    errors.print(Text.assemble(("error:", "red"), " ", visible(message)), highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A `note:` line (stderr) about what a command did that the person may not expect; the command goes on."""
    errors.print(Text.assemble(("note:", "yellow"), " ", visible(message)), highlight=False, soft_wrap=True)


def started(project_id: str, result: Started) -> None:
    if result.replayed:
        out.print(
            f"Project {project_id} was already started by this same proposal (workflow {result.workflow_id}); "
            "nothing changed."
        )
    else:
        out.print(f"Started project {project_id} (workflow {result.workflow_id}); screening runs now.")


def receipt(project_id: str, r: Receipt) -> None:
    after = f"; now {r.stage.value} at sequence {r.sequence}" if r.stage is not None and r.sequence is not None else ""
    out.print(f"{project_id}: {r.message} (event #{r.event_sequence}, decision id {r.decision_id}{after})")


def progress(project_id: str, p: Progress) -> None:
    state = "" if p.reached else " (not reached before the timeout)"
    out.print(f"{project_id}: {p.stage.value} at sequence {p.sequence}{state} — {p.details}")


def status(s: ProjectStatus) -> None:
    out.print(Text.assemble((s.project_id, "bold"), " — ", visible(s.title)))
    out.print(
        f"{s.country} · {s.sector.value} · contract {s.contract}"
        + (f" (USD {s.contract_usd:,})" if s.contract_usd else "")
    )
    out.print(
        Text.assemble(
            "Stage: ",
            (s.stage.value, "bold"),
            visible(
                f" since {s.stage_since:%Y-%m-%d %H:%M} UTC — {s.details} (sequence {s.sequence}"
                + ("; it takes no more decisions)" if s.stage.is_final else f": decide with --based-on {s.sequence})")
            ),
        )
    )
    for reason in s.screening_reasons:
        out.print(f"  ✗ {reason}")
    if s.publishing_blocked:
        out.print(Text.assemble(("Status events held back:", "yellow"), " ", visible(s.publishing_blocked)))
    if s.reviews:
        table = Table(title="Financing reviews")
        for col in ("institution", "status", "requested", "approved", "deadline", "by / reason"):
            table.add_column(col)
        for r in s.reviews:
            table.add_row(
                r.institution.display,
                r.status.value,
                str(r.requested),
                str(r.approved) if r.approved else "",
                f"{r.deadline:%Y-%m-%d}",
                r.decided_by or r.reason or "",
            )
        out.print(table)
        for r in s.reviews:
            for asked in r.information_requests:
                if asked.answer is None:  # what the contractor is to answer (`alliance respond`)
                    out.print(
                        f"{r.institution.display} asks ({asked.request_id}, {asked.asked_by}, "
                        f"{asked.asked_at:%Y-%m-%d}): {asked.questions}"
                    )
    if s.conditions:
        table = Table(title="Conditions precedent")
        for col in ("id", "condition", "required by", "satisfied"):
            table.add_column(col)
        for c in s.conditions:
            table.add_row(c.condition_id, c.title, c.required_by, c.evidence or "")
        out.print(table)
    if s.tranches:
        table = Table(title="Tranches")
        for col in ("institution", "approved", "disbursed", "retained", "released"):
            table.add_column(col)
        for t in s.tranches:
            table.add_row(t.institution.display, str(t.approved), str(t.disbursed), str(t.retained), str(t.released))
        out.print(table)
    if s.stage.value in ("delivery", "warranty", "completed") or any(m.completed_at for m in s.milestones):
        table = Table(title="Milestones")
        for col in ("id", "milestone", "share", "certificate", "completed"):
            table.add_column(col)
        for m in s.milestones:
            table.add_row(
                m.milestone_id,
                m.title,
                f"{m.payment_share_pct}%",
                m.certificate.reference if m.certificate else "",
                _milestone_state(m),
            )
        out.print(table)
    published = sum(e.published for e in s.events)
    out.print(f"Status events: {len(s.events)} ({published} published)")


def _milestone_state(m: Milestone) -> str:
    if m.completed_at:
        return f"{m.completed_at:%Y-%m-%d}"
    if m.awaited_since:
        return f"awaited since {m.awaited_since:%Y-%m-%d}" + (f", {m.reminders} reminder(s)" if m.reminders else "")
    return ""


def projects(rows: list[ProjectRow], total: int) -> None:
    table = Table()
    for col in ("project", "stage", "country", "sector", "pending", "contract (USD)", "started"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row.project_id,
            row.stage,
            row.country,
            row.sector,
            ", ".join(row.pending),
            f"{row.contract_usd:,.0f}" if row.contract_usd is not None else "",
            f"{row.started:%Y-%m-%d %H:%M}",
        )
    out.print(table)
    out.print(shown(len(rows), total, "project(s)"))


def inbox(page: InboxPage, shown_items: int) -> None:
    table = Table()
    for col in ("deadline", "project", "country", "requested", "status", "open request"):
        table.add_column(col)
    for item in page.items:
        table.add_row(
            f"{item.deadline:%Y-%m-%d %H:%M}",
            item.project_id,
            item.country,
            str(item.requested),
            item.status.value,
            item.open_information_request or "",
        )
    out.print(table)
    out.print(shown(shown_items, page.total, "open review(s)"))
    if page.unanswered:
        out.print(Text.assemble(("Not answering now, not listed:", "yellow"), " ", visible(", ".join(page.unanswered))))


def shown(count: int, total: int, what: str) -> str:
    """'12 project(s)', or 'first 100 of 205 project(s); --all for the rest'."""
    if count >= total:
        return f"{total} {what}"
    return f"first {count} of {total} {what}; --all for the rest"
