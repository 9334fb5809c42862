"""The billing agent: payments, invoices, refunds, subscriptions (agent.py, tools.py)."""
