"""datakit's dedup as datatrove steps, in a plain datatrove pipeline over real multilingual text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from datakit.corpus_steps import near_dedup as nd
from datakit.datatrove_steps.dedup import DedupClusters, DedupFilter, DedupSignatures, Signed

LANGS = ["eng-US", "zho-CN", "fra", "hin", "tha"]  # spaced and unspaced scripts


def paragraphs(corpus: Path, code: str, n: int) -> list[str]:
    lines = (corpus / f"ntrex128/NTREX-128/newstest2019-ref.{code}.txt").read_text(encoding="utf-8").splitlines()
    return [" ".join(lines[4 * i : 4 * i + 4]) for i in range(n)]


def near_copy(text: str, rng: random.Random) -> str:
    """One word (or, in an unspaced script, a few characters) changed."""
    words = text.split(" ")
    if len(words) > 20:
        i = rng.randrange(len(words))
        words[i] = words[i][::-1] + "x"
        return " ".join(words)
    i = rng.randrange(len(text) - 3)
    return text[:i] + "一二" + text[i + 2 :]


def exact_copy(text: str) -> str:
    """The same content as exact dedup sees it: case, punctuation and spacing changed."""
    return "  " + text.upper().replace(",", " ,").replace(".", "!") + " ..."


@pytest.fixture(scope="module")
def planted(corpus, tmp_path_factory):
    rng = random.Random(3)
    docs, exact, near = [], set(), set()
    for code in LANGS:
        for i, text in enumerate(paragraphs(corpus, code, 40)):
            docs.append({"id": f"a-{code}-{i:03d}", "text": text, "language": code})
            if i % 4 == 0:
                exact.add(f"b-{code}-{i:03d}")
                docs.append({"id": f"b-{code}-{i:03d}", "text": exact_copy(text), "language": code})
            if i % 4 == 1:
                near.add(f"c-{code}-{i:03d}")
                docs.append({"id": f"c-{code}-{i:03d}", "text": near_copy(text, rng), "language": code})
    rng.shuffle(docs)  # duplicates land in other files (ranks) than what they duplicate
    folder = tmp_path_factory.mktemp("input")
    half = len(docs) // 2
    for k, chunk in enumerate((docs[:half], docs[half:])):
        (folder / f"part-{k}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in chunk), encoding="utf-8")
    return folder, docs, exact, near


def dedup(input_folder: Path, work: Path, tasks: int) -> tuple[set[str], dict[str, dict]]:
    def reader():
        return JsonlReader(str(input_folder))

    sigs = LocalPipelineExecutor([reader(), DedupSignatures(str(work / "dedup"), scope_key="language")],
                                 tasks=tasks, workers=1, logging_dir=str(work / "logs/1"))
    clusters = LocalPipelineExecutor([DedupClusters(str(work / "dedup"))], tasks=1, logging_dir=str(work / "logs/2"), depends=sigs)
    filt = LocalPipelineExecutor([reader(), DedupFilter(str(work / "dedup"), exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
                                  JsonlWriter(str(work / "kept"), compression=None)],
                                 tasks=tasks, workers=1, logging_dir=str(work / "logs/3"), depends=clusters)
    filt.run()
    kept = {json.loads(line)["id"] for f in (work / "kept").glob("*.jsonl") for line in f.read_text(encoding="utf-8").splitlines()}
    removed = {}
    for f in (work / "removed").glob("*.jsonl"):
        for line in f.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            removed[doc["id"]] = doc["metadata"]
    return kept, removed


def test_datatrove_dedup_removes_planted_duplicates_and_keeps_every_distinct_text(planted, tmp_path):
    folder, docs, exact, near = planted
    kept, removed = dedup(folder, tmp_path, tasks=2)
    originals = {d["id"] for d in docs if d["id"].startswith("a-")}
    assert kept | set(removed) == {d["id"] for d in docs} and not kept & set(removed)  # nothing lost
    assert originals <= kept, "no distinct paragraph is removed; the representative is the smallest id"
    assert exact <= set(removed) and all(removed[i]["dedup_reason"] == "exact_duplicate" for i in exact)
    caught = {i for i in near if i in removed and removed[i]["dedup_reason"] == "near_duplicate"}
    assert len(caught) >= 0.9 * len(near), f"near duplicates caught: {len(caught)}/{len(near)}"
    for i in caught:  # each names what it duplicates: the original of the same paragraph
        assert removed[i]["duplicate_of"] == "a-" + i[2:] and removed[i]["similarity"] >= 0.8
    for lang in ("zho-CN", "tha"):  # unspaced scripts: character shingles find them too
        assert any(i.startswith(f"c-{lang}") for i in caught)


def test_datatrove_dedup_result_does_not_depend_on_the_number_of_ranks(planted, tmp_path):
    folder, *_ = planted
    assert dedup(folder, tmp_path / "one", tasks=1) == dedup(folder, tmp_path / "two", tasks=2)


def test_clusters_refuse_signatures_made_with_other_settings(planted, tmp_path):
    folder, *_ = planted
    docs = list(JsonlReader(str(folder)).run(None, 0, 1))
    list(DedupSignatures(str(tmp_path), scope_key="language").run(iter(docs), 0, 1))
    with pytest.raises(ValueError, match=r"00000\.npz: signatures made with .*threshold=0\.8.*same threshold"):
        list(DedupClusters(str(tmp_path), threshold=0.7).run(None, 0, 1))


def test_signature_file_holds_each_document_once_with_its_id(planted, tmp_path):
    """What pass 1 writes, read back: every id in input order, one 16-byte key and one signature each,
    and a document's signature is the MinHash of its text (identical texts, identical rows)."""
    folder, *_ = planted
    read = list(JsonlReader(str(folder)).run(None, 0, 1))
    list(DedupSignatures(str(tmp_path), scope_key="language").run(iter(read), 0, 1))
    step = DedupClusters(str(tmp_path))
    sigs = Signed.read(tmp_path / "signatures" / "00000.npz", step.params)
    assert sigs.ids().to_pylist() == [d.id for d in read]
    assert sigs.keys.shape == (len(read), 16) and sigs.sigs.shape == (len(read), step.params.num_perm)
    one = nd.signatures([nd.shingles([read[3].text], step.params)], step.params)[0]
    assert (sigs.sigs[3] == one).all()
