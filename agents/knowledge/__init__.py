"""The knowledge agent. Importing it registers its tool (search_knowledge_base)."""

from agents.knowledge import tools as tools  # registers the tools
