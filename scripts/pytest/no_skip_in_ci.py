"""pytest plugin shared by the project's Python suites: under CI=true nothing may be skipped.

A skipped test means a part the suite needs (Swift, moto, a binary, a package) was missing, and
CI must install and start every part itself, so a skip fails the run (after the whole suite ran,
with the skipped tests named). Outside CI a skip stays a skip.

Register it from a conftest:

    sys.path.insert(0, str(REPO / "scripts" / "pytest"))
    import no_skip_in_ci

    def pytest_configure(config):
        config.pluginmanager.register(no_skip_in_ci.NoSkipInCi(), "no-skip-in-ci")
"""

import os
import sys


class NoSkipInCi:
    def __init__(self):
        self.skipped = []

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session, exitstatus):
        if os.environ.get("CI") == "true" and self.skipped:
            sys.stderr.write(
                f"CI=true: {len(self.skipped)} test(s) skipped, which CI does not allow: {self.skipped}\n"
            )
            session.exitstatus = 1
