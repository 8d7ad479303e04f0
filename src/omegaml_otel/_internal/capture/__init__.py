"""Capture: instrumentation of Celery, logging and print output, per process."""
