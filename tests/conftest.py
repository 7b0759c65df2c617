"""Settings for the whole suite, applied before any test module imports dlt.

Offline by default: dlt sends anonymous usage telemetry unless ``RUNTIME__DLTHUB_TELEMETRY``
is false, so the suite sets it (whatever the shell says) for itself and every subprocess it
starts. tests/packaging/test_offline_by_default.py checks that a pipeline run here sends none.
"""

from __future__ import annotations

import os

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
