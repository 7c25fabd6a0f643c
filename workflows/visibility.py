"""What operators filter on in the Temporal Web UI: the project's typed search attributes.

`alliance dev` and the test servers register exactly these (name and type come from the keys below).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

from schemas.status import ProjectStatus

STAGE = SearchAttributeKey.for_keyword("ProjectStage")
COUNTRY = SearchAttributeKey.for_keyword("ProjectCountry")
SECTOR = SearchAttributeKey.for_keyword("ProjectSector")
PENDING = SearchAttributeKey.for_keyword_list("PendingInstitutions")
CONTRACT_USD = SearchAttributeKey.for_float("ContractAmountUsd")

ALL_KEYS = (STAGE, COUNTRY, SECTOR, PENDING, CONTRACT_USD)


def updates_for(status: ProjectStatus) -> list[SearchAttributeUpdate[Any]]:
    updates: list[SearchAttributeUpdate[Any]] = [
        STAGE.value_set(status.stage.value),
        COUNTRY.value_set(status.country),
        SECTOR.value_set(status.sector.value),
        PENDING.value_set([i.value for i in status.pending_institutions]),
    ]
    if status.contract_usd is not None:
        updates.append(CONTRACT_USD.value_set(float(status.contract_usd)))
    return updates


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DOUBLE": "Double"}
    return [f"--search-attribute={k.name}={kinds[k.indexed_value_type.name]}" for k in ALL_KEYS]


if __name__ == "__main__":
    print(" ".join(cli_flags()))
