"""Compat: omega-ml's layouts and APIs (``om.logger`` and its dataset, experiments) over the native store."""
