"""The knowledge agent: search_knowledge_base over the KB (agent.py, tools.py, kb.py)."""
