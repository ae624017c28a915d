"""Handing freed memory back to the system between the corpus steps' phases.

The driver's peak is what one phase holds plus what the phases before it freed but the allocators
kept: Arrow's pool keeps freed buffers, and glibc's malloc keeps freed numpy arrays in its heap.
Memory kept by one of them cannot serve the other, so each phase would add to the last one's.

Arrow's own allocator matters as much. The wheels default to mimalloc, which kept most of what
the corpus steps freed (1M records: 430 MB resident after a release, 103 MB of it live Arrow
data); jemalloc hands freed pages back (332 MB) and its peak was 140 MB lower. The build uses
jemalloc where the wheel has it, in the driver and in every task.
"""

from __future__ import annotations

import contextlib
import ctypes

import pyarrow as pa


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()


def prefer_jemalloc() -> None:
    """Make jemalloc Arrow's default pool where this pyarrow has it (Linux and macOS wheels; not
    Windows); else leave the default. Idempotent and cheap after the first call: called at the start
    of every task too, since the workers of a user's own Dask cluster are not started by us."""
    global _POOL_SET
    if _POOL_SET:
        return
    _POOL_SET = True
    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc keeps its default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_POOL_SET = False


def release_memory() -> None:
    """Return what Arrow's pool and malloc hold free to the system (as Dask's workers trim theirs)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
