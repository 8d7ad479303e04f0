"""Compat: omega-ml layouts and APIs (om.logger, and later experiments) over the native store."""
