"""The cyclic garbage collector paused while a batch of records is made or worked on.

A batch's records are dicts of lists, dicts and tuples (messages, meta, scores, the hidden
fields): several containers a record, none of them in a cycle, all freed by reference counting
once the batch is written. Every few hundred new containers start a collection, and each of them
walks what the batch holds so far, none of it garbage yet: about a tenth of bench_construct's
read + construct + write passes (collector on against off, same process, batches of 2,000
records), and about 5% of the language-ID stage. What a batch leaves in a cycle is collected as
usual once the collector runs again, between batches.

Paused step by step (construct, then each stage), the batch was still alive each time the
collector came back, and its first collection walked all of it again: `each_batch_paused` pauses
a batch's whole life instead, and drops the batch before resuming. Freed containers leave the
collector's count as they go, so it resumes with little to walk.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import TypeVar

_Batch = TypeVar("_Batch")
_END = object()


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


def each_batch_paused(batches: Iterator[_Batch], work: Callable[[_Batch], object]) -> None:
    """`work(batch)` for every batch, each batch's whole life paused: made by the iterator (its
    rows read, its records built), worked on, and dropped before the collector resumes. `work`
    keeps nothing of the batch (its records are written, or rejected and written)."""
    while True:
        with collector_paused():
            batch = next(batches, _END)
            if batch is _END:
                return
            work(batch)
            del batch
