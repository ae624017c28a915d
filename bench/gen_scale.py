"""A realistic large input for the scale benchmark, made from the real text in ../shared/corpus.

- parallel rows (`bitext/*.jsonl`, {"translation": {X: ..., Y: ...}}): NTREX-128 sentence pairs over
  its ~120 languages, hub pairs (X-eng, X-zho) and X<->Y pairs, each (line, X, Y) once: tens of
  millions are possible, so every size is distinct text;
- general instructions (`general/{en,zh}.jsonl`, Alpaca layout): real instructions from the Alpaca
  demo and BELLE with a real NTREX sentence as their input, each combination once;
- about 5% planted duplicates: half exact copies, half near copies (one word or character changed).

Each parallel row makes two records (both directions) and each general row one, so `--records N`
writes about N/2.5 parallel rows and N/5 general rows. Deterministic for a given size and seed.

    python bench/gen_scale.py --data-dir ../shared/corpus --records 320000 --out /tmp/scale-320k
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

from datakit.sources.parallel import file_language

ROWS_PER_FILE = 100_000


def ntrex(data_dir: Path) -> dict[str, list[str]]:
    texts = {}
    for path in sorted((data_dir / "ntrex128/NTREX-128").glob("newstest2019-*.txt")):
        if "ref-2" in path.name:
            continue
        lang = file_language(path.name.split(".")[-2], path)
        if lang.region is None or lang.code not in texts:
            texts[lang.code] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return texts


def instructions(data_dir: Path) -> dict[str, list[dict]]:
    en = json.loads((data_dir / "alpaca-demo/data/alpaca_en_demo.json").read_text(encoding="utf-8"))
    zh = json.loads((data_dir / "alpaca-demo/data/alpaca_zh_demo.json").read_text(encoding="utf-8"))
    for line in (data_dir / "belle/eval/eval_set.json").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        zh.append({"instruction": row["question"], "input": "", "output": row["std_answer"]})
    return {"en": [r for r in en if r["output"].strip()], "zh": [r for r in zh if r["output"].strip()]}


def perturb(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    if len(words) > 3:
        i = rng.randrange(len(words))
        words[i] = words[i] + ("s" if rng.random() < 0.5 else "")
        return " ".join(words) if words[i] else text + "."
    i = rng.randrange(max(1, len(text)))
    return text[:i] + "的" + text[i + 1 :]


class Sink:
    """JSON Lines files of at most ROWS_PER_FILE rows each."""

    def __init__(self, folder: Path, stem: str):
        self.folder, self.stem, self.n, self.f = folder, stem, 0, None
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict) -> None:
        if self.n % ROWS_PER_FILE == 0:
            if self.f:
                self.f.close()
            self.f = open(self.folder / f"{self.stem}-{self.n // ROWS_PER_FILE:04d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.n += 1

    def close(self) -> None:
        if self.f:
            self.f.close()


def generate(data_dir: Path, out: Path, records: int, seed: int = 0, dup_rate: float = 0.05) -> dict:
    rng = random.Random(seed)
    texts = ntrex(data_dir)
    langs = sorted(texts)
    hubs = ["eng_Latn", "zho_Hans"]
    others = [c for c in langs if c not in hubs]
    pairs = [(x, h) for x in others for h in hubs] + list(itertools.combinations(others, 2))
    rng.shuffle(pairs)
    n_parallel, n_general = int(records / 2.5), int(records / 5)
    bitext, dups = Sink(out / "bitext", "part"), {"exact": 0, "near": 0}
    written = 0
    for line in range(len(texts["eng_Latn"])):
        for x, y in pairs:
            if written >= n_parallel:
                break
            a, b = texts[x][line], texts[y][line]
            if not a or not b:
                continue
            row = {"translation": {x: a, y: b}}
            bitext.write(row)
            written += 1
            r = rng.random()
            if r < dup_rate / 2:
                bitext.write(row)
                dups["exact"] += 1
            elif r < dup_rate:
                bitext.write({"translation": {x: a, y: perturb(b, rng)}})
                dups["near"] += 1
        if written >= n_parallel:
            break
    bitext.close()
    insts = instructions(data_dir)
    for lang, hub in (("en", "eng_Latn"), ("zh", "zho_Hans")):
        sink = Sink(out / "general", lang)
        target = int(n_general * (0.62 if lang == "zh" else 0.38))
        combos = itertools.product(range(len(texts[hub])), range(len(insts[lang])))
        for i, line in itertools.islice(combos, target):
            inst = insts[lang][line]
            row = {"instruction": inst["instruction"], "input": texts[hub][i], "output": inst["output"]}
            sink.write(row)
            if rng.random() < dup_rate:
                sink.write(row if rng.random() < 0.5 else {**row, "output": perturb(row["output"], rng)})
        sink.close()
    return {"parallel_rows": written, "general_rows": n_general, "planted": dups}


RECIPE = """# The scale benchmark's recipe over bench/gen_scale.py's output.
name: scale-bench
seed: 7
pivots: [eng_Latn, zho_Hans]
sources:
  - {name: general-en, format: alpaca, path: general, files: 'en-.*\\.jsonl', lang: eng_Latn, license: mixed}
  - {name: general-zh, format: alpaca, path: general, files: 'zh-.*\\.jsonl', lang: zho_Hans, license: mixed}
  - {name: parallel, format: bitext, path: bitext, license: CC-BY-SA-4.0}
construct:
  translation: {non_pivot_pairs: true}
dedup:
  exact: true
  near: {threshold: 0.8, num_perm: 128}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    info = generate(Path(args.data_dir), out, args.records, args.seed)
    (out / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
