"""Loads the hypothesis profile named by $HYPOTHESIS_PROFILE (default ``ci``) when the parity
properties are imported (strategies.py and catalog.py import this), so a run that collects them
gets the harness's settings and other projects' runs keep their own."""

import os

from hypothesis import settings

from . import plugin  # noqa: F401  (registers the profiles when the plugin was not autoloaded)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
