"""What the command line prints of text that came from people: shown as written, never read as markup, never able
to control the terminal (alliance/cli/render.py). No server: statuses built by the rule modules' own states."""

from __future__ import annotations

import pytest

from alliance.cli import render
from schemas.decisions import Institution
from tests.workflows import states
from workflows import cancellation, financing

# Found by a fresh-clone try: a rejection's reason with ANSI colour and an OSC window title reached every terminal
# that showed the project. Its siblings: a carriage return (rewrites the line), a bell, a DEL, a C1 control (CSI).
CONTROLS = ["\x1b[31mRED\x1b[0m", "\x1b]0;pwned\x07", "real\rfake", "bell\x07", "del\x7f", "csi\x9b31m"]
# Rich markup in people's text: "[/]" stopped `alliance status` with a MarkupError traceback; the others restyled it.
MARKUP = ["closing [/] tag", "[bold red]loud[/]", "[link=https://example.com]click[/link]", "a [b] c"]


@pytest.mark.parametrize("text", CONTROLS + MARKUP)
def test_a_status_shows_peoples_text_as_written_without_controls(
    text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = states.proposal()
    p = p.model_copy(update={"title": f"Title {text}"})
    status = states.in_financing(p)
    rejection = states.rejection(Institution.sinosure, reason=f"Reason {text}")
    states.decide(status, p, financing.check_reject, financing.reject, rejection, f"Officer {text}", states.T0)
    monkeypatch.setattr(render.out, "width", 300)  # one table row per review: the cell is not wrapped
    render.status(status)
    shown = capsys.readouterr().out
    assert not render.CONTROL.search(shown), repr(shown)
    written_out = render.visible(text)
    assert f"Title {written_out}" in shown, shown
    assert f"Officer {written_out}" in shown, shown


@pytest.mark.parametrize("text", CONTROLS + MARKUP)
def test_an_error_line_shows_the_message_as_written(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    render.error(f"refused: {text}")
    err = capsys.readouterr().err
    assert err == f"error: refused: {render.visible(text)}\n"


def test_line_feeds_and_tabs_stay_and_every_other_control_is_written_out() -> None:
    assert render.visible("a\tb\nc") == "a\tb\nc"
    assert render.visible("\x1b[31m\r\x00\x9b") == "\\x1b[31m\\x0d\\x00\\x9b"


def test_an_ended_project_is_not_offered_a_basis_to_decide_on(capsys: pytest.CaptureFixture[str]) -> None:
    status = states.in_financing(states.proposal())
    render.status(status)
    assert f"decide with --based-on {status.sequence}" in capsys.readouterr().out
    cancelled = states.cancellation()
    p = states.proposal()
    states.decide(status, p, cancellation.check_cancel, cancellation.cancel, cancelled, "Ops", states.T0)
    render.status(status)
    shown = capsys.readouterr().out
    assert "--based-on" not in shown and "it takes no more decisions" in shown


def test_piped_output_is_not_cut_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # `alliance list | cat` cut ids and amounts ('ng-publi…'): scripts could not read it (found by fresh-clone tries).
    monkeypatch.delenv("COLUMNS", raising=False)
    assert render.Terminal().width == render.PIPED_WIDTH  # under pytest, stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "120")
    assert render.Terminal().width == 120


def test_an_open_information_request_shows_its_questions(capsys: pytest.CaptureFixture[str]) -> None:
    # The contractor could read what to answer only in `status --json` (found by a fresh-clone try).
    p = states.proposal()
    status = states.in_financing(p)
    asked = states.question(Institution.sinosure, "Send the updated \x1b[31mfeasibility[/] study")
    check, apply = financing.check_request_information, financing.request_information
    states.decide(status, p, check, apply, asked, "Ops", states.T0)
    render.status(status)
    shown = capsys.readouterr().out
    assert "asks (" in shown and "Send the updated \\x1b[31mfeasibility[/] study" in shown, shown
