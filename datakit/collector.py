"""The cyclic garbage collector paused while a batch of records is made or worked on.

A batch's records are dicts of lists, dicts and tuples (messages, meta, scores, the hidden
fields): several containers a record, none of them in a cycle, all freed by reference counting
once the batch is written. Every few hundred new containers start a collection, and each of them
walks what the batch holds so far, none of it garbage yet: about a tenth of bench_construct's
read + construct + write passes (collector on against off, same process, batches of 2,000
records), and about 5% of the language-ID stage. What a batch leaves in a cycle is collected as
usual once the collector runs again, between batches.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block. Only a block that paused it resumes it, so nested
    blocks (a stage inside a task's step) and another thread's pause are left as they were."""
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
