"""The account agent: the customer's account, password resets, orders (agent.py, tools.py)."""
