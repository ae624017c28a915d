"""`python -m datakit.why OUT QUERY`: what happened to a record, and why.

QUERY is a record id or a piece of text. Every file under `OUT/data/` and `OUT/rejected/` is
scanned (column by column, with Arrow): a match in data/ says the record is in the corpus; a match
in rejected/ says which stage removed it, the reason, its scores and what it matched (the
duplicate it was folded into, the benchmark item it contained). The build's report
(`OUT/report/report.html`) shows examples of every removal reason with this command beside each;
the output here names the report's section where more records removed for the same reason are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datakit.write.anchors import KEPT_PAGE, REPORT_PAGE, language_anchor, reason_anchor
from datakit.write.evidence import (
    first_user_text,
    lid_found,
    loads,
    matched,
    other_scores,
    provenance,
    shorten,
)

ID_LENGTH = 32


def _matches(table: pa.Table, query: str) -> np.ndarray:
    if len(query) == ID_LENGTH and all(c in "0123456789abcdef" for c in query):
        return pc.equal(table.column("id"), query).to_numpy(zero_copy_only=False)
    messages = table.column("messages").combine_chunks()
    hit = np.zeros(table.num_rows, dtype=bool)
    flat = pc.list_flatten(messages)
    if len(flat):
        found = pc.match_substring(pc.struct_field(flat, "content"), query, ignore_case=True).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(messages).to_numpy()
        hit[parents[found]] = True
    raw = pc.match_substring(table.column("meta"), query, ignore_case=True).to_numpy(zero_copy_only=False)
    return hit | raw


def find(out: Path, query: str, limit: int = 20) -> list[dict[str, Any]]:
    results = []
    for where in ("data", "rejected"):
        for path in sorted((out / where).rglob("*.parquet")):
            table = pq.read_table(path)
            rows = np.flatnonzero(_matches(table, query))
            for r in rows[: limit - len(results)]:
                row = table.slice(int(r), 1).to_pylist()[0]
                results.append({"file": path.relative_to(out).as_posix(), **row})
            if len(results) >= limit:
                return results
    return results


def describe(hit: dict[str, Any]) -> str:
    meta = loads(hit.get("meta"))
    scores = loads(hit.get("scores"))
    lines = [f"{hit['id']}  ({hit.get('source')}, {hit.get('lang')}, {hit.get('task')})  in {hit['file']}"]
    if "reason" in hit:
        lines.append(f"  removed by stage {hit['stage']!r}: {hit['reason']}")
    else:
        lines.append("  kept: in the corpus")
    if matched(meta):
        lines.append(f"  matched: {json.dumps(matched(meta), ensure_ascii=False)}")
    lines += [f"  language ID: {line}" for line in lid_found(scores)]
    if other_scores(scores):
        lines.append(f"  scores: {json.dumps(other_scores(scores), ensure_ascii=False, sort_keys=True)}")
    lines.append(f"  from: {json.dumps(provenance(meta), ensure_ascii=False)}")
    lines.append(f"  text: {shorten(first_user_text(hit), 160)}")
    return "\n".join(lines)


def report_pointers(out: Path, hits: list[dict[str, Any]]) -> list[str]:
    """Where the build's report shows more records like these: the section of each removal reason,
    the kept examples of each language."""
    page = out / "report" / REPORT_PAGE
    if not page.is_file():
        return []
    seen: dict[str, None] = {}
    for hit in hits:
        if "reason" in hit:
            seen[f"{page}#{reason_anchor(hit['stage'], hit['reason'])} (other records removed by {hit['stage']}: {hit['reason']})"] = None
        else:
            seen[f"{page.with_name(KEPT_PAGE)}#{language_anchor(hit['lang'])} (kept records of {hit['lang']})"] = None
    return [f"report: {line}" for line in seen]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datakit.why", description="Tell which stage removed a record, why, and with what scores.")
    ap.add_argument("out", help="a datakit output folder")
    ap.add_argument("query", help="a record id (32 hex digits) or a piece of its text")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="print the matching rows as JSON lines")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not (out / "data").is_dir() and not (out / "rejected").is_dir():
        print(f"error: {out} is not a datakit output folder (no data/ or rejected/)", file=sys.stderr)
        return 2
    hits = find(out, args.query, args.limit)
    if not hits:
        print(f"no record in {out} has id or text matching {args.query!r}")
        return 1
    for hit in hits:
        print(json.dumps(hit, ensure_ascii=False) if args.json else describe(hit) + "\n")
    for line in [] if args.json else report_pointers(out, hits):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
