"""Balance, validation split, card and report through real builds of the local recipe."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from contract import check_contract, tree_bytes
from huggingface_hub import DatasetCard

from datakit.build import BuildOptions, run_build

ROOT = Path(__file__).resolve().parents[1]
MIX = {"zh": 0.432, "en": 0.262, "cross_lingual": 0.306}


def largest_remainder(total: int, shares: dict[str, float]) -> dict[str, int]:
    raw = {k: total * v for k, v in shares.items()}
    out = {k: math.floor(x) for k, x in raw.items()}
    for k in sorted(sorted(raw), key=lambda k: -round(raw[k] - out[k], 9))[: total - sum(out.values())]:  # ties: by name
        out[k] += 1
    return out


def build(corpus, out, workers: int = 1, target: int | None = None, **overrides):
    return run_build(BuildOptions(recipe=str(ROOT / "pipelines/local.yaml"), data_dir=str(corpus), output=str(out), sample=40,
                                  workers=workers, langs="swh_Latn,yor_Latn,fra_Latn,hin_Deva",
                                  overrides={"balance.target_size": target, **overrides}))


@pytest.fixture(scope="module")
def balanced(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("balanced") / "out"
    return build(corpus, out, target=200, **{"output.validation.min_language_rows": 20, "output.validation.fraction": 0.1})


def test_groups_get_exact_quotas_and_the_mix_is_met(balanced):
    rows = check_contract(balanced.out)
    got = Counter(r["group"] for r in rows)
    assert dict(got) == largest_remainder(200, MIX)
    for g, share in MIX.items():
        assert abs(got[g] / 200 - share) <= 0.005
    assert not balanced.stats["shortfall"]


def test_validation_split_sits_beside_train_and_loads(balanced):
    import datasets

    out = balanced.out
    val = sorted(out.glob("data/*/validation-*.parquet"))
    assert val
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows + ds["validation"].num_rows == 200
    assert not set(ds["train"]["id"]) & set(ds["validation"]["id"])


def test_card_parses_and_its_tables_match_the_data(balanced):
    card = DatasetCard.load(balanced.out / "README.md")
    configs = {c["config_name"]: c for c in card.data.configs}
    langs = {p.parent.name for p in balanced.out.glob("data/*/*.parquet")}
    assert set(configs) == {"default"} | langs
    assert card.data.size_categories == ["n<1K"]
    rows = check_contract(balanced.out)
    by_group = Counter(r["group"] for r in rows)
    for g, n in by_group.items():
        assert f"| {g} | {n} |" in card.text
    for s in balanced.stats["stages"]:
        assert f"| {s['name']} | {s['in']} |" in card.text


def test_report_has_every_plot(balanced):
    page = (balanced.out / "report" / "report.html").read_text(encoding="utf-8")
    for plot in ("mix.png", "funnel.png", "lengths.png", "lid_scores.png"):
        assert f'src="{plot}"' in page
        assert (balanced.out / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((balanced.out / "manifest.json").read_text())
    assert {"report/report.html", "report/mix.png"} <= {f["path"] for f in manifest["files"]}


def test_shortfall_is_reported_when_the_data_cannot_fill_the_target(corpus, tmp_path):
    result = build(corpus, tmp_path / "out", target=5000)
    assert result.stats["shortfall"]["zh"] > 0 and result.stats["shortfall"]["total"] > 0
    assert "Shortfall" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_upsampling_repeats_translations_as_new_records(corpus, tmp_path):
    out = tmp_path / "out"
    # ~2,050 records are available: a target well above them needs repeats whatever the seeded choices made
    result = build(corpus, out, target=2600, **{"balance.mix": {"zh": 0.0, "en": 0.0, "cross_lingual": 1.0}, "balance.max_repeat": 2})
    rows = check_contract(out)  # unique ids: repeats are re-rendered, not copied
    balance = result.stats["stages"][-1]
    assert balance["repeated"] > 0 and len(rows) == balance["kept"]
    repeats = [r for r in rows if "repeat_of" in json.loads(r["meta"])]
    assert len(repeats) == balance["repeated"]
    originals = {r["id"]: r for r in rows}
    for r in repeats[:50]:
        meta = json.loads(r["meta"])
        first = originals[meta["repeat_of"]]
        assert r["messages"][-1] == first["messages"][-1] and r["messages"][0] != first["messages"][0]


def test_dry_run_plans_without_writing_the_corpus(corpus, tmp_path):
    out = tmp_path / "out"
    run_build(BuildOptions(recipe=str(ROOT / "pipelines/local.yaml"), data_dir=str(corpus), output=str(out), sample=10,
                           langs="swh_Latn", workers=1, dry_run=True, overrides={"balance.target_size": 50}))
    assert not (out / "data").exists() and not (out / "README.md").exists()


def test_two_workers_same_bytes_with_balance_and_validation(balanced, corpus, tmp_path):
    out = tmp_path / "out"
    build(corpus, out, target=200, workers=2, **{"output.validation.min_language_rows": 20, "output.validation.fraction": 0.1})
    assert tree_bytes(out, "data") == tree_bytes(balanced.out, "data")
