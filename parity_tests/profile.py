"""The harness's hypothesis profiles, registered and loaded when the parity properties are
imported (strategies.py and catalog.py import this module), so a run that collects them gets
these settings and other projects' runs keep their own.

HYPOTHESIS_PROFILE=ci (default): derandomized, 45 examples a property (what keeps the whole of
``make test`` within CI's 10 minutes on 2 cores, also on the slower of the machines seen), no deadline;
thorough: 1000 examples; debug: ci with verbose output; smoke: ci with 5 examples, to see that the
harness runs at all (the project's own test of an installed harness uses it on a re-export of an
engine that the suite tests in full); ci100: ci with 100 examples (the project's tests of the
rejection fixtures).

No profile prints hypothesis's "@reproduce_failure(...)" blob: that advice is to decorate the
failing test, and the harness's tests are not the engine author's to edit (they are installed in
site-packages). The plugin's "Reproduce" section says what does work instead: rerunning the test
alone (ci is derandomized, so it fails on the same example again; under thorough, hypothesis
replays the failing example saved in .hypothesis/ first).
"""

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings

# Every phase but explain: its "These lines were always and only run by failing test cases" lists
# lines of the harness's own helpers, which tell an engine's author nothing.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=45,
    print_blob=False,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    print_blob=False,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("debug", parent=settings.get_profile("ci"), verbosity=Verbosity.verbose)
settings.register_profile("smoke", parent=settings.get_profile("ci"), max_examples=5)
# ci with 100 examples a property: the project's tests run the rejection fixtures under it (each
# fixture's smallest failing case, and which properties catch it, were established at 100).
settings.register_profile("ci100", parent=settings.get_profile("ci"), max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
