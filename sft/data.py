"""Shards -> tokens (cached) -> packed rows -> the micro-batches each rank sees at each step.

1. `resolve_dataset`: the Parquet files of the chosen configs and splits, from a datakit output folder (its
   README.md lists the configs) or a Hub dataset repository (only those files are downloaded).
2. `load_tokenized`: stream the rows, tokenize with the chat format (`templates`), keep ids + a trained flag per
   token. The result is cached on disk under a key of (tokenizer, template, files, split): a second run, or
   another seq_len, reads it back instead of tokenizing again. Processes that want the same split take turns on a
   file lock: the first tokenizes, the others read its cache. No collective is involved (under torchrun this runs
   before the process group exists), so a long tokenization cannot hit a collective timeout.
3. `TokenizedSet.truncated` / `language_mix` / `pack`: cut examples to seq_len, resample languages (p ~ n^(1/T) or
   by weights), then pack them into rows of at most seq_len tokens (best-fit decreasing, deterministic).
4. `Batches`: the rows of optimizer step s are a pure function of (seed, s), which is what makes resume exact.
5. `collate`: tensors for a micro-batch; position ids restart at every example, `segment_ids` say which
   example a token belongs to (for the attention mask), the first label of every example is masked. The labelled
   positions and their target ids are listed on the host, so the loss never asks the GPU how many there are.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from sft.templates import ChatFormat, tokenize_conversations

CACHE_VERSION = "sft-tokens-2"  # 2: labels from character offsets of one rendering
IGNORE = -100


class DataError(ValueError):
    """The data cannot be used as asked: unknown config, nothing left to train on, ..."""


# ---------------------------------------------------------------- 1. which files


@dataclass
class DatasetFiles:
    root: Path
    splits: dict[str, list[Path]]  # split -> Parquet files, sorted, no duplicates
    available: list[str]  # config names the dataset offers

    def fingerprint(self, split: str) -> str:
        """What the files are: sha256 from manifest.json when it matches, else size + mtime."""
        manifest = {}
        if (self.root / "manifest.json").is_file():
            files = json.loads((self.root / "manifest.json").read_text(encoding="utf-8")).get("files", [])
            manifest = {f["path"]: f for f in files if isinstance(f, dict) and "path" in f}
        parts = []
        for path in self.splits.get(split, []):
            rel, stat = path.relative_to(self.root).as_posix(), path.stat()
            known = manifest.get(rel, {})
            ident = known.get("sha256") if known.get("bytes") == stat.st_size else f"{stat.st_size}:{stat.st_mtime_ns}"
            parts.append(f"{rel}={ident}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _card_configs(readme: Path) -> dict[str, dict[str, list[str]]]:
    """config name -> split -> path globs, from the YAML header of a dataset card."""
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    header = yaml.safe_load(text.split("---", 2)[1]) or {}
    configs: dict[str, dict[str, list[str]]] = {}
    for entry in header.get("configs", []) or []:
        files = entry.get("data_files", [])
        splits: dict[str, list[str]] = {}
        if isinstance(files, str):
            files = [{"split": "train", "path": files}]
        for item in files:
            globs = item["path"] if isinstance(item["path"], list) else [item["path"]]
            splits.setdefault(item.get("split", "train"), []).extend(globs)
        configs[entry["config_name"]] = splits
    return configs


def _folder_configs(root: Path) -> dict[str, dict[str, list[str]]]:
    """Without a card: data/<config>/<split>-*.parquet, and `default` = all of them."""
    langs = sorted(p.name for p in (root / "data").glob("*") if p.is_dir())
    configs = {lang: {sp: [f"data/{lang}/{sp}-*.parquet"] for sp in ("train", "validation")} for lang in langs}
    configs["default"] = {sp: [f"data/*/{sp}-*.parquet"] for sp in ("train", "validation")}
    return configs


def _download(repo_id: str, configs: list[str]) -> Path:
    """Fetch the card of a Hub dataset, then only the files of the chosen configs."""
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        readme = Path(hf_hub_download(repo_id, "README.md", repo_type="dataset"))
    except Exception as e:
        raise DataError(f"data {repo_id!r} is neither a local folder nor a reachable Hub dataset: {e}") from e
    known = _card_configs(readme) or {}
    patterns = ["README.md", "manifest.json"]
    for name in configs:
        patterns += [g for globs in known.get(name, {"train": ["data/**"]}).values() for g in globs]
    return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))


def resolve_dataset(data: str, configs: list[str], mirror: str = "") -> DatasetFiles:
    """A local folder as is; a Hub id from the mirror folder when it has it, else from the Hub (or its cache)."""
    root = Path(data).expanduser()
    if not root.is_dir() and mirror and (Path(mirror) / data).is_dir():
        root = Path(mirror) / data
    elif not root.is_dir():
        root = _download(data, configs)
    known = _card_configs(root / "README.md") or _folder_configs(root)
    unknown = [c for c in configs if c not in known]
    if unknown:
        raise DataError(f"data {data!r} has no config {', '.join(map(repr, unknown))}; "
                        f"it has: {', '.join(sorted(known))}")
    all_files = sorted(p for p in root.rglob("*.parquet") if "rejected" not in p.relative_to(root).parts)
    splits: dict[str, list[Path]] = {}
    for name in configs:
        for split, globs in known[name].items():
            hits = [p for p in all_files if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), g) for g in globs)]
            splits.setdefault(split, []).extend(hits)
    splits = {sp: sorted(set(files)) for sp, files in splits.items() if files}
    return DatasetFiles(root=root, splits=splits, available=sorted(known))


def read_rows(files: list[Path], columns: list[str], batch_rows: int = 1024) -> Iterator[list[dict]]:
    """Stream rows as dicts, a record batch at a time (a column a file lacks reads as None)."""
    for path in files:
        pf = pq.ParquetFile(path)
        present = [c for c in columns if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=present):
            rows = batch.to_pylist()
            for c in set(columns) - set(present):
                for r in rows:
                    r[c] = None
            yield rows


# ---------------------------------------------------------------- 2. tokens, cached


@dataclass
class TokenizedSet:
    """Examples back to back in two flat arrays; an example is (start, length) into them."""

    ids: np.ndarray  # int32
    trained: np.ndarray  # bool: this token is a label
    starts: np.ndarray  # int64, per example
    lengths: np.ndarray  # int64, per example
    rows: np.ndarray  # int64, per example: row number over the split's files (to read the text back)
    lang_ids: np.ndarray  # int32, per example, into `langs`
    langs: list[str]

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index: np.ndarray) -> TokenizedSet:
        index = np.asarray(index, dtype=np.int64)
        return TokenizedSet(self.ids, self.trained, self.starts[index], self.lengths[index], self.rows[index],
                            self.lang_ids[index], self.langs)

    def trained_counts(self) -> np.ndarray:
        cum = np.concatenate([[0], np.cumsum(self.trained, dtype=np.int64)])
        return cum[self.starts + self.lengths] - cum[self.starts]

    def target_counts(self) -> np.ndarray:
        """Loss targets per example: its trained tokens, less the first (never predicted from a previous example)."""
        return self.trained_counts() - self.trained[self.starts].astype(np.int64)

    def truncated(self, seq_len: int) -> tuple[TokenizedSet, dict[str, int]]:
        """Cut every example to seq_len tokens; drop those left with nothing to train."""
        cut = TokenizedSet(self.ids, self.trained, self.starts, np.minimum(self.lengths, seq_len), self.rows,
                           self.lang_ids, self.langs)
        keep = np.flatnonzero(cut.trained_counts() > 0)
        stats = {"examples": len(self), "truncated": int((self.lengths > seq_len).sum()),
                 "dropped_no_target_left": len(self) - len(keep)}
        return cut.take(keep), stats

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s, n = self.starts[i], self.lengths[i]
        return self.ids[s:s + n], self.trained[s:s + n]

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("ids", "trained", "starts", "lengths", "rows", "lang_ids"):
            np.save(folder / f"{name}.npy", getattr(self, name))
        (folder / "meta.json").write_text(json.dumps({**meta, "langs": self.langs}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TokenizedSet:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r" if n in ("ids", "trained") else None)
                  for n in ("ids", "trained", "starts", "lengths", "rows", "lang_ids")}
        return cls(**arrays, langs=meta["langs"])


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Changes whenever the tokenizer would produce other ids: its full serialisation plus special tokens."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([str(tokenizer.bos_token), str(tokenizer.eos_token), len(tokenizer)]).encode())
    return h.hexdigest()


def tokenize_files(files: list[Path], tokenizer: Any, fmt: ChatFormat, log: Any = print) -> TokenizedSet:
    ids: list[np.ndarray] = []
    trained: list[np.ndarray] = []
    lengths, rows, lang_ids = [], [], []
    langs: dict[str, int] = {}
    row_number, t0 = 0, time.time()
    for batch in read_rows(files, ["messages", "lang"]):
        conversations = [r["messages"] or [] for r in batch]
        for r, (tok, mask) in zip(batch, tokenize_conversations(fmt, tokenizer, conversations), strict=True):
            if tok:  # a conversation with no assistant turn has nothing to train
                ids.append(np.asarray(tok, dtype=np.int32))
                trained.append(np.asarray(mask, dtype=bool))
                lengths.append(len(tok))
                rows.append(row_number)
                lang_ids.append(langs.setdefault(r["lang"] or "und", len(langs)))
            row_number += 1
        if row_number % 100_000 < len(batch):
            log(f"tokenized {row_number:,} rows ({row_number / max(time.time() - t0, 1e-9):,.0f} rows/s)")
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64) if lengths else np.zeros(0, np.int64)
    return TokenizedSet(
        ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        trained=np.concatenate(trained) if trained else np.zeros(0, bool),
        starts=starts, lengths=lengths_arr, rows=np.asarray(rows, dtype=np.int64),
        lang_ids=np.asarray(lang_ids, dtype=np.int32), langs=list(langs))


def default_cache_dir() -> Path:
    return Path(os.environ.get("SFT_CACHE_DIR") or Path.home() / ".cache" / "datakit" / "sft")


def cache_key(files: DatasetFiles, split: str, tokenizer: Any, fmt: ChatFormat) -> str:
    """What the tokens of a split depend on: tokenizer, template, the files' contents. Also the run's data identity
    (a resumed run refuses another)."""
    return hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "template": fmt.source,
        "files": files.fingerprint(split), "split": split}).encode()).hexdigest()[:24]


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float, what: str, poll_s: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting at most timeout_s. flock is released by the kernel when its holder
    dies, so a killed run leaves no stale lock behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DataError(f"waited {timeout_s:g} s for {path}: another process is still {what}; "
                                    "raise tokenize_timeout_s, or tokenize once beforehand (one process)") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_tokenized(files: DatasetFiles, split: str, tokenizer: Any, fmt: ChatFormat, cache_dir: Path,
                   timeout_s: float = 14400, log: Any = print) -> tuple[TokenizedSet, bool]:
    """The tokenized split, from the cache when it has it. Returns (set, whether it came from the cache).

    Every process may call this at the same time: they take turns on a file lock in the cache folder; the first
    tokenizes, the others find its result. Waiting longer than timeout_s is an error that says why.
    """
    key = cache_key(files, split, tokenizer, fmt)
    folder = Path(cache_dir) / key
    hit = (folder / "meta.json").is_file()
    if not hit:
        with file_lock(Path(cache_dir) / ".locks" / key, timeout_s, f"tokenizing {split} into {folder}"):
            hit = (folder / "meta.json").is_file()  # tokenized by whoever held the lock before us
            if not hit:
                log(f"tokenizing {split} ({len(files.splits[split])} files) with template {fmt.name!r} -> {folder}")
                tset = tokenize_files(files.splits[split], tokenizer, fmt, log)
                tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
                tset.save(tmp, {"split": split, "template": fmt.name, "files": [str(p) for p in files.splits[split]],
                                "tokenizer": getattr(tokenizer, "name_or_path", ""), "examples": len(tset)})
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
    return TokenizedSet.load(folder), hit


# ---------------------------------------------------------------- 3a. language mix


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integers in proportion to weights that sum to total exactly (ties: the order of `weights`)."""
    norm = sum(weights.values())
    exact = {k: total * w / norm for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: out[k] - exact[k])[:total - sum(out.values())]:
        out[k] += 1
    return out


def language_mix(tset: TokenizedSet, temperature: float, weights: dict[str, float], seed: int
                 ) -> tuple[TokenizedSet, dict[str, dict[str, float]]]:
    """Resample the examples' languages, datakit balance's rule: p ~ n^(1/T) (T = 1: as they are, T > 1: flatter),
    or p ~ weights[lang] when weights are given (a language without a weight gets none). The epoch keeps its number
    of examples; a language above its share keeps a seeded subset, one below repeats all its examples, then a
    seeded subset. Returns the examples and the mix per language (available, share, sampled)."""
    counts = {lang: int(n) for lang, n in zip(tset.langs, np.bincount(tset.lang_ids, minlength=len(tset.langs)),
                                              strict=True) if n}
    if weights:
        unknown = sorted(set(weights) - set(counts))
        if unknown:
            raise DataError(f"language_weights names {', '.join(unknown)}, which the training data does not have "
                            f"(it has: {', '.join(sorted(counts))})")
        raw = {lang: float(weights.get(lang, 0.0)) for lang in counts}
    else:
        raw = {lang: n ** (1.0 / temperature) for lang, n in counts.items()}
    total = sum(counts.values())
    quotas = _largest_remainder(total, raw) if (weights or temperature != 1.0) else counts
    rng = np.random.default_rng([seed, 7])
    picked = []
    for lang_id, lang in enumerate(tset.langs):
        if lang not in counts:
            continue
        mine = rng.permutation(np.flatnonzero(tset.lang_ids == lang_id))
        rounds, rest = divmod(quotas[lang], len(mine))
        picked += [*([mine] * rounds), mine[:rest]]
    mix = {lang: {"available": counts[lang], "share": round(quotas[lang] / total, 6), "sampled": quotas[lang]}
           for lang in counts}
    return tset.take(np.sort(np.concatenate(picked))), mix


# ---------------------------------------------------------------- 3. packing


def pack(lengths: np.ndarray, seq_len: int, seed: int, chunk: int = 8192) -> list[np.ndarray]:
    """Rows of example indices, each row's lengths summing to at most seq_len.

    Best-fit decreasing inside chunks of a seeded shuffle: near-full rows, linear time, the same rows for the
    same (lengths, seq_len, seed). An example is never split across rows.
    """
    if len(lengths) and int(lengths.max()) > seq_len:
        raise ValueError(f"an example of {int(lengths.max())} tokens cannot fit rows of {seq_len}; truncate first")
    order = np.random.default_rng(seed).permutation(len(lengths))
    rows: list[np.ndarray] = []
    for lo in range(0, len(order), chunk):
        part = order[lo:lo + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        bins: list[list[int]] = []
        by_room: dict[int, list[int]] = {}  # room left -> bins with exactly that room
        have = np.zeros(seq_len + 1, dtype=np.int64)  # how many bins have that room
        for ex in part.tolist():
            n = int(lengths[ex])
            fits = have[n:] > 0
            room = n + int(fits.argmax()) if fits.any() else -1  # the tightest bin that still fits
            if room < 0:
                b, room = len(bins), seq_len
                bins.append([])
            else:
                b = by_room[room].pop()
                have[room] -= 1
            bins[b].append(ex)
            by_room.setdefault(room - n, []).append(b)
            have[room - n] += 1
        rows.extend(np.asarray(b, dtype=np.int64) for b in bins)
    return rows


# ---------------------------------------------------------------- 4. which rows at which step


class Batches:
    """Step s of the run holds rows order(epoch)[i : i + world*batch*accum]; rank r takes its slice of that.

    The split of a step's rows over ranks and micro-batches never changes which rows the step trains on, so
    batch 8 x accum 1, batch 1 x accum 8 and 2 ranks x batch 4 see the same examples.
    """

    def __init__(self, rows: list[np.ndarray], batch_size: int, grad_accum: int, world: int, rank: int,
                 seed: int, shuffle: bool = True):
        self.rows, self.batch_size, self.grad_accum = rows, batch_size, grad_accum
        self.world, self.rank, self.seed, self.shuffle = world, rank, seed, shuffle
        self.per_step = world * batch_size * grad_accum
        self.steps_per_epoch = len(rows) // self.per_step
        if self.steps_per_epoch == 0:
            raise DataError(f"{len(rows)} rows cannot fill one optimizer step of {self.per_step} rows "
                            f"({world} ranks x batch_size {batch_size} x grad_accum {grad_accum}); lower batch_size "
                            "or grad_accum, or train on more data")
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            n = len(self.rows)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order = (epoch, perm)
        return self._order[1]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index of the step's first row in that epoch's order)."""
        return step // self.steps_per_epoch, (step % self.steps_per_epoch) * self.per_step

    def step_rows(self, step: int) -> list[np.ndarray]:
        """Every row of the step, all ranks' (each rank can count the step's targets without asking the others)."""
        epoch, start = self.position(step)
        return [self.rows[j] for j in self.order(epoch)[start:start + self.per_step]]

    def micro_batches(self, step: int) -> list[list[np.ndarray]]:
        per_rank = self.batch_size * self.grad_accum
        mine = self.step_rows(step)[self.rank * per_rank:(self.rank + 1) * per_rank]
        return [mine[a * self.batch_size:(a + 1) * self.batch_size] for a in range(self.grad_accum)]


# ---------------------------------------------------------------- 5. tensors


def row_width(needed: int, cap: int, multiple: int = 8) -> int:
    """The width to pad `needed` tokens to: the cap (seq_len; rows x seq_len for a flattened batch) once more than
    half of it is needed, else the next power of two. Packed rows are nearly full, so nearly every step has the one
    shape: torch.compile compiles a handful of shapes once, and the allocator reuses the same blocks."""
    width = cap if needed > cap // 2 else 1 << max(needed - 1, 0).bit_length()
    width = max(width, needed)
    return -(-width // multiple) * multiple


def collate(tset: TokenizedSet, rows: list[np.ndarray], pad_id: int, flatten: bool = False,
            width: int | None = None) -> dict[str, Any]:
    """A micro-batch: input_ids, labels (HF convention, unshifted), position_ids, segment_ids, example_lengths,
    target_positions / target_ids / target_langs (every labelled position of the flattened batch, the token it
    predicts, its example's language id), and counts: tokens (real), slots (real + padding), targets.

    flatten=True (varlen kernels) puts every example of every row in one row, plus cu_seq_lens and max_length.
    Rows are padded to `width` (default: just what they need); padding is segment -1, labelled -100, its own
    sequence (position ids from 0, in cu_seq_lens too), so it attends only to padding.
    """
    per_row = [[(*tset.example(int(i)), int(tset.lang_ids[i])) for i in row] for row in rows]
    if flatten:
        per_row = [[ex for row in per_row for ex in row]]
    needed = max(sum(len(ids) for ids, _, _ in row) for row in per_row)
    width = needed if width is None else width
    if width < needed:
        raise ValueError(f"rows of {needed} tokens do not fit width {width}")
    shape = (len(per_row), width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    labels = np.full(shape, IGNORE, dtype=np.int64)
    position_ids = np.zeros(shape, dtype=np.int64)
    segment_ids = np.full(shape, -1, dtype=np.int64)
    token_langs = np.full(shape, -1, dtype=np.int64)
    example_lengths: list[int] = []
    for b, row in enumerate(per_row):
        t = 0
        for k, (ids, trained, lang) in enumerate(row):
            n = len(ids)
            input_ids[b, t:t + n] = ids
            labels[b, t:t + n] = np.where(trained, ids, IGNORE)
            labels[b, t] = IGNORE  # never predict an example's first token from the previous example
            position_ids[b, t:t + n] = np.arange(n)
            segment_ids[b, t:t + n] = k
            token_langs[b, t:t + n] = lang
            example_lengths.append(n)
            t += n
        position_ids[b, t:] = np.arange(width - t)  # padding: its own sequence, attends only to padding
    shifted = np.full(shape, IGNORE, dtype=np.int64)
    shifted[:, :-1] = labels[:, 1:]  # position t predicts token t + 1
    positions = np.flatnonzero(shifted != IGNORE)
    real = sum(example_lengths)
    batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
             "position_ids": torch.from_numpy(position_ids), "segment_ids": torch.from_numpy(segment_ids),
             "target_positions": torch.from_numpy(positions), "target_ids": torch.from_numpy(shifted.ravel()[positions]),
             "target_langs": torch.from_numpy(token_langs.ravel()[positions]),
             "example_lengths": example_lengths, "tokens": real, "slots": shape[0] * shape[1],
             "targets": len(positions)}
    if flatten:
        sequences = example_lengths + ([width - real] if width > real else [])
        batch["cu_seq_lens"] = torch.from_numpy(np.concatenate([[0], np.cumsum(sequences)]).astype(np.int32))
        batch["max_length"] = max(sequences)
    return batch
