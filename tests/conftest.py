"""Shared fixtures: where the real corpus is, and small builds that several tests read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DATAKIT_CORPUS", ROOT.parent / "shared" / "corpus"))

# Hugging Face caches per test run, never the network. Set before any test module imports
# `datasets`, which reads these once at import time.
_HF_HOME = tempfile.mkdtemp(prefix="datakit-tests-hf-")
os.environ.update(HF_HOME=_HF_HOME, HF_DATASETS_CACHE=os.path.join(_HF_HOME, "datasets"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


@pytest.fixture(autouse=True, scope="session")
def _remove_hf_home():
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)


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
