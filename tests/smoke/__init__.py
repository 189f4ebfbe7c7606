"""The smoke test under faults (issue 6): random command trees, random kills, exactly-once verified.

Run it with ``scripts/smoke`` (``python -m tests.smoke``); see docs/testing.md. The shared test helpers
(``e2e.processes``, ``kafka.harness``, ``support.kafka``) are imported as pytest imports them, with
``tests/`` on the import path, which this makes so when the package is run as ``tests.smoke``.
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
