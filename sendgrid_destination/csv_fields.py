"""Wide CSV cells, safely: ``csv.field_size_limit`` is process-wide.

``wide_fields(limit)`` raises the limit to at least ``limit`` characters for the ``with``
block and puts the previous one back after, under one lock for every reader in the process
(the errors-file parser and the emulator's import reader may run at once in one process:
with a lock each, one put back the default while the other was reading a long cell).
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

_LOCK: Final = threading.Lock()


@contextmanager
def wide_fields(limit: int) -> Iterator[None]:
    with _LOCK:
        previous = csv.field_size_limit()
        csv.field_size_limit(max(previous, limit))
        try:
            yield
        finally:
            csv.field_size_limit(previous)
