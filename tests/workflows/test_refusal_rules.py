"""Refusals (workflows/refusals.py): the exception's type tells the edge which HTTP status to answer and that a retry
cannot help; the project's end has one wording. Pure: no server."""

from __future__ import annotations

import pytest

from schemas.stage import FINAL_STAGES, Stage
from workflows.refusals import NotPermitted, PreconditionFailed, Refused, has_ended


@pytest.mark.parametrize(
    ("refusal", "kind"),
    [
        (Refused("Sinosure has no unanswered information request"), "DecisionRefused"),
        (NotPermitted("Li Wei is an officer of China Development Bank and cannot act for China Exim"), "NotPermitted"),
        (PreconditionFailed("project p changed since sequence 5"), "PreconditionFailed"),
    ],
)
def test_a_refusal_is_final_and_its_type_names_its_kind(refusal: Refused, kind: str) -> None:
    assert isinstance(refusal, Refused)
    assert refusal.type == kind
    assert refusal.non_retryable


@pytest.mark.parametrize("final", sorted(FINAL_STAGES))
def test_a_project_that_has_ended_says_so_in_one_wording(final: Stage) -> None:
    refusal = has_ended("th-smart-taxation", final)
    assert refusal.type == "DecisionRefused" and refusal.non_retryable
    assert refusal.message == f"project th-smart-taxation has ended ({final.value}); it takes no more decisions"
