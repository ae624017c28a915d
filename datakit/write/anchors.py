"""Where in the report a reason or a language is shown: the page names and link targets that the
report writes and `python -m datakit.why` points to, kept in one place so the two agree."""

from __future__ import annotations

import re

REPORT_PAGE = "report.html"
KEPT_PAGE = "kept.html"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def reason_anchor(stage: str, reason: str) -> str:
    """The section of report.html holding a removal reason's count and examples."""
    return f"removed-{_slug(stage)}-{_slug(reason)}"


def language_anchor(lang: str) -> str:
    """The section of kept.html holding a language's kept examples."""
    return f"kept-{_slug(lang)}"
