"""Construction: raw rows -> instruction records.

One builder per kind of example: general instructions pass through as they are; parallel text
becomes translation instructions in both directions around each pivot; parallel QA becomes
same-language and cross-lingual QA. Every choice a builder makes (instruction language, template)
is drawn from hashes of the recipe seed and the row's stable key (`records.seeded_rng`), never
from the worker.
"""

from __future__ import annotations

from datakit.construct.builders import Built, Rejected, build

__all__ = ["Built", "Rejected", "build"]
