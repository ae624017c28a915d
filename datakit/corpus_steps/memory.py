"""Handing freed memory back to the system between the corpus steps' phases.

The driver's peak is what one phase holds plus what the phases before it freed but the allocators
kept: Arrow's pool keeps freed buffers, and glibc's malloc keeps freed numpy arrays in its heap.
Memory kept by one of them cannot serve the other, so each phase would add to the last one's.
"""

from __future__ import annotations

import ctypes

import pyarrow as pa


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()


def release_memory() -> None:
    """Return what Arrow's pool and malloc hold free to the system (as Dask's workers trim theirs)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
