"""The daily model budget is one total for every worker process (security review F19).

Each ``SharedLedger`` here stands for one worker process: nothing is shared between them
but Postgres. The model endpoint is the local OpenAI-compatible test server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select

from shared import db
from shared.brains.openai_client import EndpointUnavailable, ModelClient, SharedLedger
from shared.models import ModelSpend
from shared.settings import ModelPrice, Settings
from tests.support.fake_openai import FakeOpenAI, completion

pytestmark = pytest.mark.integration


@pytest.fixture
def no_spend_today(database_url: str) -> Iterator[None]:
    def clear() -> None:
        with db.session_scope() as s:
            s.execute(delete(ModelSpend).where(ModelSpend.day == datetime.now(UTC).date()))

    clear()
    yield
    clear()


def _settings(fake: FakeOpenAI, budget: float) -> Settings:
    return Settings(
        openai_base_url=fake.url,
        openai_api_key="sk-test",
        openai_daily_budget_usd=budget,
        openai_max_retries=0,
        openai_prices={"big": ModelPrice(input=1000.0, output=1000.0)},  # 1000 USD per million tokens
    )


def _ask(client: ModelClient) -> None:
    client.complete("big", [{"role": "user", "content": "hello"}], deadline_at=time.time() + 5)


@pytest.mark.usefixtures("no_spend_today")
def test_what_one_process_spent_counts_against_the_budget_of_every_other() -> None:
    with FakeOpenAI() as fake:
        # Each answer reports 300 prompt + 300 completion tokens: 0.6 USD at this price.
        usage = {"prompt_tokens": 300, "completion_tokens": 300, "cached_tokens": 0}
        answer = {"role": "assistant", "content": "hello"}
        fake.script("big", completion(answer, "stop", usage), completion(answer, "stop", usage))
        first = ModelClient(_settings(fake, budget=1.0), ledger=SharedLedger())
        second = ModelClient(_settings(fake, budget=1.0), ledger=SharedLedger())
        _ask(first)
        _ask(second)  # 0.6 spent so far: under the budget
        assert len(fake.requests_for("big")) == 2
        # 1.2 spent between them: a third process, and each of these, is over the budget of 1.0.
        for client in (first, second, ModelClient(_settings(fake, budget=1.0), ledger=SharedLedger())):
            with pytest.raises(EndpointUnavailable) as refused:
                _ask(client)
            assert refused.value.reason == "over_budget"
        assert len(fake.requests_for("big")) == 2  # no request was sent over the budget
    with db.session_scope() as s:
        row = s.execute(select(ModelSpend).where(ModelSpend.day == datetime.now(UTC).date())).scalar_one()
        assert float(row.spent_usd) == pytest.approx(1.2)
        assert row.calls == 2
