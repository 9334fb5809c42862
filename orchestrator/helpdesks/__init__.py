"""Real helpdesks in and out: Zendesk, Freshdesk and Intercom (docs/helpdesks.md).

Each connector module reads its helpdesk's own webhook (verified its own way, on the raw
body) into an ``Inbound`` event, or says why the request is refused or ignored.
"""
