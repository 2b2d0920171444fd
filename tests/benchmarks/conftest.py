"""The benchmarks are scripts (python benchmarks/<name>.py) that import their sibling modules by name:
the tests put that folder on the path the same way the scripts find it."""
from __future__ import annotations

import sys

from tests.conftest import REPO

BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
