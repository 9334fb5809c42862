from __future__ import annotations

from orchestrator.window import model_window


def test_card_numbers_and_other_emails_never_reach_the_agents() -> None:
    window = model_window(
        [("customer", "My card 4242 4242 4242 4242 was charged; cc my colleague bob@corp.example")],
        "ana@example.com",
    )
    body = window[0].body
    assert "4242 4242 4242 4242" not in body and "4242" in body
    assert "bob@corp.example" not in body


def test_customers_own_email_is_kept() -> None:
    (msg,) = model_window([("customer", "Send it to ana@example.com please")], "ana@example.com")
    assert "ana@example.com" in msg.body


def test_long_conversation_keeps_the_last_three_verbatim_and_summarises_the_rest() -> None:
    messages = [("customer" if i % 2 == 0 else "assistant", f"message number {i}") for i in range(9)]
    window = model_window(messages, None)
    assert [m.role for m in window] == ["summary", "customer", "assistant", "customer"]
    assert [m.body for m in window[1:]] == ["message number 6", "message number 7", "message number 8"]
    assert "message number 0" in window[0].body and "message number 5" in window[0].body


def test_short_conversation_is_passed_whole() -> None:
    messages = [("customer", "a"), ("assistant", "b"), ("customer", "c")]
    assert [m.body for m in model_window(messages, None)] == ["a", "b", "c"]


def test_log_lines_never_carry_a_card_number_or_a_password() -> None:
    import json
    import logging

    from shared.logs import JsonFormatter

    record = logging.makeLogRecord(
        {"msg": "customer wrote: card 4111 1111 1111 1111, my password is hunter2!", "levelname": "INFO"}
    )
    line = json.loads(JsonFormatter().format(record))
    assert "4111 1111 1111 1111" not in line["msg"] and "hunter2" not in line["msg"]
    assert "1111" in line["msg"]
