"""Imported by ``opentelemetry-instrument`` itself, before it starts the program: makes it pick this package's
distro unless one is chosen.

The launcher imports every ``opentelemetry_environment_variables`` entry point (to offer their variables as
command-line options) and then starts the program with its environment. That import is the only moment a package
can act before the program's ``sitecustomize`` picks a distro, which, with ``OTEL_PYTHON_DISTRO`` unset, is the
first one ``os.listdir`` happens to list (see ``distro.py``). Nothing heavy is imported here: the launcher stays
fast. ``OTEL_PYTHON_DISTRO`` set by the user, or ``--distro``, still wins. Never import this module anywhere else:
importing it is what sets the variable.
"""
from __future__ import annotations

import os

from omegaml_otel.conventions import DISTRO

os.environ.setdefault("OTEL_PYTHON_DISTRO", DISTRO)
