"""The enrich stage: classification (operator rules, Redis cache, LLM, built-in rules) and the filter rules.

Pure decisions beside the agent, as in agents/history. The history agent's decider reads only `severity`.
"""

from agents.enrich.builtin import classify, severity

__all__ = ["classify", "severity"]
