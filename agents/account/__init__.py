"""The account agent. Importing it registers its tools (the account, password resets, orders)."""

from agents.account import tools as tools  # registers the tools
