"""Secrets stay out of reprs, and task payloads and SQL parameters stay out of log lines."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from shared.logs import JsonFormatter
from shared.settings import Settings


def test_settings_repr_shows_no_secret() -> None:
    settings = Settings(
        sources={"zendesk": {"secret": "whsec-very-secret"}},
        openai_api_key="sk-live-very-secret",
        tool_backends={"list_payments": {"url": "https://pay.internal", "headers": {"Authorization": "Bearer tok-9"}}},
    )
    shown = repr(settings) + str(settings) + repr(settings.sources) + repr(settings.tool_backends)
    for secret in ("whsec-very-secret", "sk-live-very-secret", "tok-9"):
        assert secret not in shown
    assert settings.source("zendesk").secret.get_secret_value() == "whsec-very-secret"


def _line(record: logging.LogRecord) -> dict[str, object]:
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_celery_task_record_keeps_its_name_and_id_but_not_its_arguments() -> None:
    # What celery/worker/strategy.py logs for every task it receives.
    context = {
        "id": "9f1c",
        "name": "switchboard.agent.billing",
        "args": "[{'customer': {'name': 'Zoe Quartermaine', 'email': 'zoe@example.org'}, 'window': ['my card']}]",
        "kwargs": "{}",
        "eta": None,
    }
    record = logging.makeLogRecord(
        {"msg": "Task %(name)s[%(id)s] received", "args": context, "levelno": 20, "levelname": "INFO"}
    )
    record.data = context
    line = _line(record)
    assert line["msg"] == "Task switchboard.agent.billing[9f1c] received"
    assert "Quartermaine" not in json.dumps(line) and "zoe@example.org" not in json.dumps(line)
    assert line["data"] == {"id": "9f1c", "name": "switchboard.agent.billing", "eta": None}


def test_database_errors_are_logged_without_their_bound_parameters() -> None:
    # SQLAlchemy puts "[parameters: ...]" (a message body, an email) into every DBAPIError
    # message unless the engine hides them; both kinds of engine we make do.
    from shared import db

    engine = db.configure(Settings(database_url="postgresql://nobody@127.0.0.1:1/nothing"))
    one_off = db.one_off_engine("postgresql://nobody@127.0.0.1:1/nothing")
    assert engine.hide_parameters and one_off.hide_parameters
    engine.dispose()
    one_off.dispose()


def test_a_source_that_requires_a_signature_without_a_secret_is_refused_at_start() -> None:
    import pytest

    from orchestrator.api import create_app
    from shared.errors import ConfigurationError

    with pytest.raises(
        ConfigurationError, match="zendesk require a signature or get signed replies but have no secret"
    ):
        create_app(Settings(sources={"zendesk": {"require_signature": True}}))
    with pytest.raises(ConfigurationError, match="intercom"):  # replies signed with an empty key prove nothing
        create_app(Settings(sources={"intercom": {"callback_url": "https://desk.example.com/hook"}}))
    create_app(Settings(sources={"zendesk": {"require_signature": True, "secret": "s"}}))  # with one it starts


def test_production_refuses_empty_or_well_known_secrets_and_names_them() -> None:
    import pytest

    from shared.errors import ConfigurationError
    from shared.settings import refuse_weak_secrets

    weak = Settings(
        environment="production",
        sources={"zendesk": {"secret": "change-me"}, "intercom": {"secret": "k3Jq-9f1x-long-random"}},
        database_url="postgresql://switchboard:switchboard@db:5432/switchboard",
        broker_url="amqp://guest:guest@mq:5672//",
    )
    with pytest.raises(ConfigurationError) as refused:
        refuse_weak_secrets(weak)
    message = str(refused.value)
    assert "SWITCHBOARD_SOURCES[zendesk].secret" in message and "intercom" not in message
    assert "SWITCHBOARD_DATABASE_URL" in message and "SWITCHBOARD_BROKER_URL" in message
    assert "change-me" not in message and "guest" not in message  # names the setting, not the value
    refuse_weak_secrets(weak.model_copy(update={"environment": "development"}))  # a laptop may
    strong = Settings(
        environment="production",
        sources={"zendesk": {"secret": "k3Jq-9f1x-long-random"}},
        database_url="postgresql://switchboard:Qx7-long-random@db:5432/switchboard",
    )
    refuse_weak_secrets(strong)


def test_production_serves_no_api_docs_and_development_does() -> None:
    from fastapi.testclient import TestClient

    from orchestrator.api import create_app

    strong = {"zendesk": {"secret": "k3Jq-9f1x-long-random"}}
    production = TestClient(create_app(Settings(environment="production", sources=strong)))
    development = TestClient(create_app(Settings(sources=strong)))
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert production.get(path).status_code == 404, path
        assert development.get(path).status_code == 200, path


def test_a_source_is_its_own_company_unless_configured_as_one_with_another() -> None:
    settings = Settings(
        sources={"zendesk": {"tenant": "acme"}, "intercom": {"tenant": "acme"}, "freshdesk": {}},
    )
    assert settings.tenant_of("zendesk") == settings.tenant_of("intercom") == "acme"
    assert settings.tenant_of("freshdesk") == "freshdesk"
    # A source nobody configured is refused at the API; it is still no one else's company.
    assert settings.tenant_of("stranger") == "stranger"


def test_a_tenant_that_is_not_a_plain_name_is_refused_at_start() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(sources={"zendesk": {"tenant": "Acme Corp"}})
    assert "sources.zendesk.tenant" in str(caught.value)


def test_plain_log_lines_are_redacted_too() -> None:
    from shared.logs import PlainFormatter

    record = logging.makeLogRecord(
        {"msg": "retrying for %s, card %s", "args": ("ana@example.com", "4242 4242 4242 4242"), "levelname": "INFO"}
    )
    record.data = {"args": "[{'customer': {'name': 'Zoe Quartermaine'}}]"}  # Celery's extra: never printed
    line = PlainFormatter().format(record)
    assert "INFO" in line and "retrying for" in line
    assert "4242 4242 4242 4242" not in line and "ana@example.com" not in line and "Quartermaine" not in line
