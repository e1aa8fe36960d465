"""Numbered SQL migrations. The wheel ships this folder as the package `app.migrations` (see pyproject.toml)."""
