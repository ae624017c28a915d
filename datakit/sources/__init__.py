"""Sources: from a recipe's `sources:` entry to partitions and raw rows.

`adapter_for(source)` picks the adapter for the source's `format`; every adapter answers the same
two questions: how does the source split into tasks (`partitions`), and what are a task's rows
(`read`)."""

from __future__ import annotations

from datakit.recipe import Source
from datakit.sources.base import Adapter
from datakit.sources.instructions import Alpaca, Messages, SeedTasks
from datakit.sources.parallel import Bitext, UdhrXml
from datakit.sources.qa import Squad, TsvQA
from datakit.sources.synthesised import SynthesisedRows

ADAPTERS: dict[str, Adapter] = {
    "alpaca": Alpaca(),
    "messages": Messages(),
    "seed_tasks": SeedTasks(),
    "bitext": Bitext(),
    "udhr_xml": UdhrXml(),
    "tsv_qa": TsvQA(),
    "squad": Squad(),
    "synthesised": SynthesisedRows(),
}


def adapter_for(source: Source) -> Adapter:
    return ADAPTERS[source.format]
