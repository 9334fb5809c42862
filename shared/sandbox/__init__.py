"""The sandbox company's systems (Acme Cloud): customers, billing, orders, in Postgres.

The demo and the tests run the tools against this store; a company plugs in its own
services per tool through ``settings.tool_backends`` (see ``shared.backends``).
"""
