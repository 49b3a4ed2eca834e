"""The build journal: what an unfinished build planned and which shards it finished.

``DIR/.seqdata-build.jsonl`` holds the plan (spec, format, boundaries) on its first line
and one line per published shard (its `ShardInfo` and length counts), each appended after
the shard's rename. Neither shards nor these lines are fsynced as they are written: they
survive the build process being killed, and ``generate --resume`` keeps only the shards
listed whose bytes still hash right, so a shard or line lost to a power cut is rebuilt.
The journal is removed once the manifest is published; a torn last line (a kill
mid-append) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdata.checks import check_int
from seqdata.errors import OutputError
from seqdata.spec import LagSumSpec
from seqdata.store.atomic import (
    file_sha256,
    fsync_path,
    read_regular_text,
    write_bytes_atomic,
)
from seqdata.store.manifest import SHARD_PATH, ShardInfo

JOURNAL_NAME = ".seqdata-build.jsonl"
MAX_JOURNAL_BYTES = 1 << 30  # a line per shard: far more than any real build writes


@dataclass(frozen=True)
class BuildPlan:
    spec: LagSumSpec
    format: str
    boundaries: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "format": self.format,
                "boundaries": list(self.boundaries)}


def start_journal(out: Path, plan: BuildPlan) -> None:
    write_bytes_atomic(out / JOURNAL_NAME, (json.dumps({"plan": plan.to_dict()}) + "\n").encode())


def record_shard(out: Path, info: ShardInfo, length_counts: np.ndarray) -> None:
    line = json.dumps({"shard": info.to_dict(), "length_counts": length_counts.tolist()})
    try:
        with open(out / JOURNAL_NAME, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {out / JOURNAL_NAME}: {e.strerror or e}") from e


def finish_journal(out: Path) -> None:
    (out / JOURNAL_NAME).unlink(missing_ok=True)
    fsync_path(out)


def read_journal(out: Path, plan: BuildPlan) -> dict[int, tuple[ShardInfo, np.ndarray]]:
    """Finished shards of an interrupted build of ``plan`` whose bytes still hash right.

    Raises OutputError if the journal is missing or was written for another plan.
    """
    path = out / JOURNAL_NAME
    try:
        lines = read_regular_text(path, MAX_JOURNAL_BYTES).splitlines()
    except FileNotFoundError:
        raise OutputError(f"{out} holds no interrupted seqdata build to resume "
                          f"({JOURNAL_NAME} not found)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise OutputError(f"cannot read {path}: {e}") from None
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except (ValueError, RecursionError):
            break  # a torn append (or worse): everything before it holds
    if not entries or not isinstance(entries[0], dict) or "plan" not in entries[0]:
        raise OutputError(f"{path} does not start with a build plan; remove {out} or pass "
                          f"overwrite=True")
    found = entries[0]["plan"]
    if found != plan.to_dict():
        keys = set(found) if isinstance(found, dict) else set()
        diff = sorted(k for k in keys | set(plan.to_dict())
                      if not isinstance(found, dict) or found.get(k) != plan.to_dict().get(k))
        raise OutputError(f"the interrupted build in {out} used another {', '.join(diff)}; "
                          f"resume with the same options, or pass overwrite=True")
    done = {}
    for entry in entries[1:]:
        kept = _finished_shard(out, entry, plan)
        if kept is not None:
            done[kept[0].chunk] = kept
    return done


def _finished_shard(out: Path, entry: Any, plan: BuildPlan) -> tuple[ShardInfo, np.ndarray] | None:
    """The shard a journal line records, if the line is well-formed and the file still
    hashes right; None for anything else (a line of the wrong shape is not trusted)."""
    try:
        s = entry["shard"]
        info = ShardInfo(s["path"], s["chunk"], tuple(s["bucket_sequences"]),
                         tuple(s["bucket_timesteps"]), s["size"], s["sha256"])
        counts = np.asarray(entry["length_counts"], np.int64)
        for name in ("chunk", "size"):
            check_int(name, getattr(info, name), 0, error=OutputError)
        span = plan.spec.lengths.high - plan.spec.lengths.low + 1
        if (not isinstance(info.path, str) or not SHARD_PATH.fullmatch(info.path)
                or not isinstance(info.sha256, str) or counts.shape != (span,)):
            return None
        shard = out / info.path
        if (shard.is_file() and shard.stat().st_size == info.size
                and file_sha256(shard) == info.sha256):
            return info, counts
    except (KeyError, TypeError, ValueError, OverflowError, OSError, OutputError):
        pass
    return None
