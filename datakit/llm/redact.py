"""Keep the API key out of everything datakit writes or says.

The key lives only inside the openai client, which reads it from `OPENAI_API_KEY`. Every string
that leaves the LLM layer (an error detail in an outcome, a log line, a cache row, an exception
message) goes through `redact` first, because providers and proxies echo request data back in
error bodies ("Incorrect API key provided: sk-...") and the openai client puts error bodies into
its exception messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "[REDACTED]"

# Shapes of credentials worth masking even when we do not know the exact value (a key from another
# variable, a token a proxy added): bearer tokens and OpenAI-style `sk-...` keys.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),
    re.compile(r"(?i)(api[-_]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._-]{6,}"),
)


def known_secrets(*extra: str | None) -> list[str]:
    """The values to mask: the key in the environment plus any the caller holds (long ones first)."""
    values = {v for v in (os.environ.get("OPENAI_API_KEY"), *extra) if v and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def redact(text: object, secrets: Iterable[str] | None = None, *, shapes: bool = True) -> str:
    """`text` as a string with every known secret masked, and credential-shaped tokens too.

    `shapes=False` masks only the exact known values: for model answers stored in the cache, whose
    text must not change unless it really holds the key.
    """
    s = str(text)
    for secret in known_secrets(*(secrets or ())):
        s = s.replace(secret, MASK)
    if shapes:
        for pattern in _PATTERNS:
            s = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, s)
    return s


def safe_endpoint(url: object) -> str:
    """An endpoint URL fit for provenance: scheme, host, port and path; no user info, no query."""
    s = str(url)
    m = re.match(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^@/]*@)?(?P<rest>[^?#]*)", s, re.I)
    return redact(m.group("scheme") + m.group("rest") if m else s.split("?")[0])
