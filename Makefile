# The two commands of the README. Each sets up .venv (idempotent) and runs one job.
.PHONY: demo test

demo:
	python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . && omtel demo

test:
	python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest -q
