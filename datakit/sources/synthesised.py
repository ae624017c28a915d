"""The results of the LLM synthesis step (construct/synthesis.py), read back like any source.

Each line is one (instruction, target language) pair: the translated conversation, or the reason
its generation was rejected, which becomes a rejected record of the read stage.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from datakit.recipe import Source
from datakit.sources import rows
from datakit.sources.base import FULL_BAND, Item, Partition, RawError, RawRow, ReadContext, Synthesised
from datakit.sources.instructions import RowAdapter


class SynthesisedRows(RowAdapter):
    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        # A row's location gains its origin below, so its band position is only known after parsing:
        # every row is parsed, and the task places it in (or out of) the band.
        for item in rows.read_rows(source, dataclasses.replace(partition, band=FULL_BAND), ctx):
            if isinstance(item, RawError):
                yield item
                continue
            loc, row = item
            loc = {**loc, **row["origin"]}
            if "reason" in row:
                yield RawError(loc, row["reason"], row.get("raw") or json.dumps(row, ensure_ascii=False), row["lang"], row.get("detail", ""))
                continue
            conv = [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["output"]}]
            src = [{"role": "user", "content": row["source_instruction"]}, {"role": "assistant", "content": row["source_output"]}]
            yield RawRow(loc, Synthesised(row["lang"], conv, src, {"from_lang": row.get("from_lang")}, row.get("generation", {})))
