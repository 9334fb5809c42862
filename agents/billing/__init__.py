"""The billing agent. Importing it registers its tools (payments, invoices, refunds, subscriptions)."""

from agents.billing import tools as tools  # registers the tools
