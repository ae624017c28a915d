"""The output folder: what datakit owns in it, and whether an earlier build there may be resumed.

datakit removes only files it recorded writing (`WrittenFiles`: the ledger `.datakit/written.json`,
and an earlier build's manifest), so a user's own file in the folder is never deleted, with
`--overwrite` too. `check_resume` lets an unfinished build be finished only by its own recipe and
inputs, and says which phases a changed rebuild reuses.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datakit.errors import OutputError
from datakit.store import WORK_DIR, explain_os_error, write_json

log = logging.getLogger("datakit")

LEDGER = "written.json"
STATE = "state.json"
PHASES = ("prepare", "exact_dedup", "near_dedup", "write")


def check_resume(out: Path, fp: dict[str, str]) -> None:
    """An unfinished build is finished only by the same recipe and inputs; a finished one may be
    rebuilt with changed settings, reusing the phases before the change."""
    try:
        state = json.loads((out / WORK_DIR / STATE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return
    old = state.get("fingerprints", {})
    changed = [p for p in PHASES if old.get(p) != fp.get(p)]
    if state.get("status") == "running" and changed:
        raise OutputError(f"{out} holds an unfinished build of a different recipe or input (changed from the "
                          f"'{changed[0]}' phase on); run its own command again to finish it ({state.get('command', '?')}), "
                          "or pass --overwrite to start clean")
    if state.get("status") == "running":
        log.info("resuming an unfinished build in %s", out)
    elif changed:
        kept = [p for p in PHASES if p not in changed]
        log.info("rebuilding %s: %s reused, %s redone", out, ", ".join(kept) or "nothing", ", ".join(changed))


class WrittenFiles:
    """The files datakit wrote into an output folder outside its work folder: the only ones it ever
    removes there (--overwrite, stale shards, an earlier build's rejected/), so a file the user put
    in the folder is never deleted.

    A path is recorded (in `.datakit/written.json`) before its file is written, so a build killed
    mid-write still owns what it left; the manifest of an earlier build counts as such a record too.
    """

    def __init__(self, out: Path):
        self.out, self.ledger = out, out / WORK_DIR / LEDGER
        listed = _read_json(self.ledger)
        manifest = _read_json(out / "manifest.json")
        if _is_manifest(manifest):
            listed = [*(listed if isinstance(listed, list) else []), "manifest.json",
                      *(e.get("path") for e in manifest["files"] if isinstance(e, dict))]
        self.paths = {p for p in (listed if isinstance(listed, list) else []) if _inside(p)}

    def add(self, paths: Iterable[str]) -> None:
        new = set(paths) - self.paths
        if new:
            self.paths |= new
            write_json(self.ledger, sorted(self.paths))

    def remove(self, under: str = "", keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Delete the recorded files under `under` (a folder prefix like "data/"), except `keep`,
        and the folders that this leaves empty; nothing else is touched."""
        gone = sorted(p for p in self.paths if p.startswith(under) and p not in keep)
        for rel in gone:
            target = self.out / rel
            if target.is_file() or target.is_symlink():
                target.unlink()
            folder = target.parent
            while folder != self.out and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        if gone:
            self.paths -= set(gone)
            write_json(self.ledger, sorted(self.paths))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_manifest(value: Any) -> bool:
    """datakit's manifest.json, not some other tool's file of that name."""
    return isinstance(value, dict) and isinstance(value.get("recipe"), dict) and isinstance(value.get("files"), list)


def _inside(rel: Any) -> bool:
    """A recorded path that names a file in the output folder (never outside it, never the work folder)."""
    if not isinstance(rel, str) or not rel:
        return False
    parts = Path(rel).parts
    return not Path(rel).is_absolute() and ".." not in parts and parts[0] != WORK_DIR


def open_output_folder(out: Path, overwrite: bool) -> None:
    """The output folder, checked writable; refused if it holds something not written by datakit
    (with --overwrite too: --overwrite removes what an earlier build wrote, and only that)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / WORK_DIR).is_dir() or _is_manifest(_read_json(out / "manifest.json"))
        if not ours:
            raise OutputError(f"output folder {out} is not empty and was not written by datakit; datakit never deletes files "
                              "it did not write, so --overwrite does not apply to it either: choose a new or empty folder")
        if overwrite:
            WrittenFiles(out).remove()
            if (out / WORK_DIR).is_dir():
                shutil.rmtree(out / WORK_DIR)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".datakit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise explain_os_error(e, out) from None
