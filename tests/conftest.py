"""Shared fixtures: where the real corpus is, and small builds that several tests read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DATAKIT_CORPUS", ROOT.parent / "shared" / "corpus"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_hf_home(tmp_path_factory):
    """Keep Hugging Face caches per test run, and never reach for the network."""
    home = tmp_path_factory.mktemp("hf_home")
    old = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "ntrex128").is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS} (set DATAKIT_CORPUS); tests on real data are skipped")
    return CORPUS


@pytest.fixture(scope="session")
def local_sample_build(corpus, tmp_path_factory):
    """pipelines/local.yaml over the real corpus, first 8 rows per source, one worker."""
    from datakit.build import BuildOptions, run_build

    out = tmp_path_factory.mktemp("local-sample") / "out"
    result = run_build(BuildOptions(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus), output=str(out),
                                    sample=8, workers=1))
    return result
