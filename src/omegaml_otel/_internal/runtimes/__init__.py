"""Runtime: the Celery app, built-in tasks, the client (om.runtime) and the worker."""
