"""The history agent (agent.py) and its parts: decider (pure), writer, expiry, holes."""
