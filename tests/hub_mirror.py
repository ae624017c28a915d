"""A local mirror shaped like the Hub datasets that pipelines/bayling2.yaml names.

Each repository gets the files and columns the real one has (file names, JSON Lines vs JSON array
vs Parquet, per-config folders with a README that declares the configs), filled with real text
from ../shared/corpus: NTREX sentences for parallel pairs, the Alpaca demo and BELLE for
instructions. Built by the tests; nothing here is committed data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from datakit import languages
from datakit.recipe import load_recipe
from datakit.resources import pipeline_path

NTREX = "ntrex128/NTREX-128"


def _ntrex_lines(corpus: Path, code: str, n: int) -> list[str] | None:
    folder = corpus / NTREX
    for path in sorted(folder.glob("newstest2019-*.txt")):
        tag = path.name.split(".")[-2]
        try:
            if languages.code(tag) == code and "-2" not in path.name:
                return path.read_text(encoding="utf-8").splitlines()[:n]
        except Exception:
            continue
    return None


def _udhr_lines(corpus: Path, code: str, n: int) -> list[str] | None:
    """Paragraphs of a UDHR translation in the language, for languages NTREX does not have."""
    from datakit.sources.parallel import _udhr_index, udhr_articles

    root = corpus / "udhr/data/udhr"
    for f in _udhr_index(root):
        try:
            if f.stage >= 4 and languages.code(f.tag) == code:
                paras = [p for _, text in sorted(udhr_articles(root / f"udhr_{f.key}.xml").items()) for p in text.split("\n")]
                return paras[:n] if len(paras) >= n else None
        except Exception:
            continue
    return None


def has_text(corpus: Path, code: str, rows: int = 4) -> bool:
    """Whether the mirror can give the language real text of its own (else its rows are English)."""
    return bool(_ntrex_lines(corpus, code, rows) or _udhr_lines(corpus, code, rows))


def recipe_languages(recipe) -> set[str]:
    """The languages besides the hubs that the recipe's parallel sources name (configs, tags)."""
    codes = {languages.code(tag) for s in recipe.sources if s.format == "bitext" for c in s.configs or [] for tag in c.split("-")}
    codes |= {code for s in recipe.sources if s.tags for code in s.tags.values()}
    return codes - set(recipe.pivots)


def _readme(configs: dict[str, list[str]]) -> str:
    header = {"configs": [{"config_name": c, "data_files": [{"split": "train", "path": f"{c}/train-*"}]} for c in configs]}
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\nMirror made by datakit's tests.\n"


def _parallel_repo(root: Path, corpus: Path, configs: list[str], rows: int, shards: int = 1) -> None:
    english = _ntrex_lines(corpus, "eng_Latn", rows)
    for config in configs:
        a, b = config.split("-")
        texts = {}
        for tag in (a, b):
            code = languages.code(tag)
            # Real text in the language: NTREX, else the UDHR, else (a few languages) English, which the
            # build's language ID then rejects, as it should.
            lines = _ntrex_lines(corpus, code, rows) or _udhr_lines(corpus, code, rows)
            texts[tag] = lines or [f"{tag} {line}" for line in english]
        table = pa.table({"translation": [{a: texts[a][i], b: texts[b][i]} for i in range(rows)]})
        step = -(-rows // shards)
        for s in range(shards):
            path = root / config / f"train-{s:05d}-of-{shards:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.slice(s * step, step), path)
    (root / "README.md").write_text(_readme({c: [] for c in configs}), encoding="utf-8")


# ALT's keys and the languages they hold (`bg` is Bengali; `en_tok` is tokenised English).
ALT_KEYS = {"bg": "ben_Beng", "en": "eng_Latn", "fil": "tgl_Latn", "hi": "hin_Deva", "id": "ind_Latn", "ja": "jpn_Jpan",
            "khm": "khm_Khmr", "lo": "lao_Laoo", "ms": "zsm_Latn", "my": "mya_Mymr", "th": "tha_Thai", "vi": "vie_Latn", "zh": "zho_Hans"}


def _alt_repo(root: Path, corpus: Path, rows: int) -> None:
    texts = {key: _ntrex_lines(corpus, code, rows) for key, code in ALT_KEYS.items()}
    missing = sorted(key for key, lines in texts.items() if not lines)
    assert not missing, f"NTREX has no text for ALT keys {missing}"
    texts["en_tok"] = [" ".join(line.replace(",", " ,").replace(".", " .").split()) for line in texts["en"]]
    table = pa.table({"SNT.URLID": [str(80000 + i) for i in range(rows)], "SNT.URLID.SNTID": [str(i + 1) for i in range(rows)],
                      "url": [f"http://en.wikinews.org/wiki/mirror_{i}" for i in range(rows)],
                      "translation": [{key: texts[key][i] for key in sorted(texts)} for i in range(rows)]})
    (root / "alt-parallel").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "alt-parallel" / "alt-train.parquet")


def build_mirror(mirror: Path, corpus: Path, rows: int = 6) -> Path:
    """Write every Hub dataset of bayling2.yaml under mirror/org/name; returns the mirror folder."""
    recipe = load_recipe(pipeline_path("bayling2.yaml"))
    alpaca_en = json.loads((corpus / "alpaca-demo/data/alpaca_en_demo.json").read_text(encoding="utf-8"))
    alpaca_zh = json.loads((corpus / "alpaca-demo/data/alpaca_zh_demo.json").read_text(encoding="utf-8"))
    for source in recipe.sources:
        root = mirror / source.hub
        root.mkdir(parents=True, exist_ok=True)
        if source.hub == "BelleGroup/train_2M_CN":  # one JSON Lines file named .json
            with open(root / "train_2M_CN.json", "w", encoding="utf-8") as f:
                for r in alpaca_zh[:rows]:
                    f.write(json.dumps({"instruction": r["instruction"], "input": "", "output": r["output"]}, ensure_ascii=False) + "\n")
        elif source.hub == "shibing624/alpaca-zh":  # a JSON array
            (root / "alpaca_gpt4_data_zh.json").write_text(json.dumps(alpaca_zh[rows : 2 * rows], ensure_ascii=False, indent=2), encoding="utf-8")
        elif source.hub == "teknium/OpenHermes-2.5":  # ShareGPT turns with weights, one JSON array
            convs = [{"conversations": [{"from": "human", "value": r["instruction"], "weight": None},
                                        {"from": "gpt", "value": r["output"], "weight": 1.0}], "source": "alpaca"} for r in alpaca_en[:rows]]
            (root / "openhermes2_5.json").write_text(json.dumps(convs, ensure_ascii=False), encoding="utf-8")
        elif source.hub == "vicgalle/alpaca-gpt4":  # Parquet under data/
            rows_ = [{**r, "text": ""} for r in alpaca_en[rows : 2 * rows]]
            (root / "data").mkdir(exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows_), root / "data" / "train-00000-of-00001-6ef3991c06080e14.parquet")
        elif source.hub == "WizardLMTeam/WizardLM_evol_instruct_V2_196k":
            convs = [{"idx": str(i), "conversations": [{"from": "human", "value": r["instruction"]}, {"from": "gpt", "value": r["output"]}]}
                     for i, r in enumerate(alpaca_en[2 * rows : 3 * rows])]
            (root / "WizardLM_evol_instruct_V2_143k.json").write_text(json.dumps(convs, ensure_ascii=False), encoding="utf-8")
        elif source.hub == "mutiyama/alt":  # the Parquet conversion: one multi-way file per split, no card
            _alt_repo(root, corpus, rows)
        elif source.format == "bitext":
            _parallel_repo(root, corpus, source.configs, rows, shards=2 if source.hub == "Helsinki-NLP/un_pc" else 1)
        else:
            raise AssertionError(f"the test mirror does not know {source.hub}; add it")
    return mirror
