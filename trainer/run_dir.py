"""The layout of a training run directory, and its checks for a new, resumed or
overwritten run.

    RUN/config.json        the training configuration, the run's id and the manifest
                           checksums of its data (written first; used by --resume)
    RUN/model.keras        the final model (written last)
    RUN/best.keras         with validation data: the model of the epoch with the best
                           validation masked accuracy (metrics.json's "best" says which)
    RUN/history.csv        one row per epoch
    RUN/metrics.json       history, final metrics and where things are
    RUN/curves.png         loss and masked accuracy per epoch
    RUN/logs/              TensorBoard event files (train/, validation/)
    RUN/checkpoints/       step-NNNNNNNN.keras after each epoch and every --checkpoint-every
                           steps (the latest few kept), each with its stamp
                           step-NNNNNNNN.json (run id, step, architecture), written first
    RUN/batches.jsonl      with --log-batches: the ids each training step used, in order
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdata.store.atomic import read_regular_text, write_text_atomic
from trainer.errors import RunDirError

CHECKPOINT_PATTERN = re.compile(r"step-(\d{8,})\.keras")
STAMP_PATTERN = re.compile(r"step-(\d{8,})\.json")
# The keys of RUN/config.json's "data" that hold the manifest checksum of each dataset.
CHECKSUM_KEYS = {"train": "train_checksum", "validation": "validation_checksum"}
JSON_LIMIT = 16 << 20  # config.json and stamps are a few hundred bytes


def checksum_of(source: Any) -> str | None:
    """The manifest checksum of a dataset (`seqdata.Dataset.checksum`); None for a source
    that has none (any other `BatchSource`), or for no source."""
    found = getattr(source, "checksum", None)
    return found if isinstance(found, str) else None


def describe_data(data: Mapping[str, Any] | None, source: Any,
                  validation: Any = None) -> dict[str, Any]:
    """``data`` (paths) with the manifest checksum of the training and validation data."""
    return {**(data or {}), CHECKSUM_KEYS["train"]: checksum_of(source),
            CHECKSUM_KEYS["validation"]: checksum_of(validation)}


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory.

    >>> RunDir(Path("run")).model.as_posix()
    'run/model.keras'
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def batch_log(self) -> Path:
        return self.root / "batches.jsonl"

    def batch_log_of(self, rank: int) -> Path:
        """The batch log of a worker's share of each step (the chief's is `batch_log`).

        >>> RunDir(Path("run")).batch_log_of(2).name
        'batches.rank-2.jsonl'
        """
        return self.batch_log if rank == 0 else self.root / f"batches.rank-{rank}.jsonl"

    def rank_batch_logs(self) -> list[tuple[int, Path]]:
        """The batch logs of workers other than the chief, by rank."""
        found = ((path.name[len("batches.rank-"):-len(".jsonl")], path)
                 for path in self.root.glob("batches.rank-*.jsonl"))
        return sorted((int(rank), path) for rank, path in found if rank.isdigit())

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def best(self) -> Path:
        return self.root / "best.keras"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def artifacts(self) -> tuple[Path, ...]:
        """Everything a run writes."""
        return (self.config, self.model, self.best, self.history, self.metrics, self.curves,
                self.logs, self.checkpoints, self.batch_log,
                *(path for _, path in self.rank_batch_logs()))

    def is_empty(self) -> bool:
        """True if the directory does not exist or holds nothing."""
        return not self.root.exists() or not any(self.root.iterdir())

    def check(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Check, changing nothing, that a run may start here.

        A non-empty directory is refused unless ``resume`` (it must then be a run, i.e.
        hold config.json) or ``overwrite``.

        Raises:
            RunDirError: the directory cannot be used as asked.
        """
        if resume and overwrite:
            raise RunDirError("give resume=True or overwrite=True, not both")
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"run directory {self.root} is a file, expected a directory")
        if self.is_empty() or overwrite:
            return
        if not resume:
            raise RunDirError(f"run directory {self.root} is not empty; pass resume=True to "
                              "continue it or overwrite=True to replace it")
        if not self.config.is_file():
            raise RunDirError(f"run directory {self.root} has no config.json, so it is not "
                              "a trainer run that resume=True can continue")

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """`check`, then (with ``overwrite``) delete the run's own artifacts, other files
        left alone, and create the folders."""
        self.check(resume=resume, overwrite=overwrite)
        if overwrite:
            self.clear()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"run directory {self.root} cannot be created: "
                              f"{exc.strerror or exc}") from exc

    def clear(self) -> None:
        """Delete the run's artifacts (and only those)."""
        for path in self.artifacts():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def read_config(self) -> dict[str, Any]:
        """The saved training configuration."""
        return _read_json_object(self.config)

    def check_same_data(self, data: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """Refuse to resume on a dataset other than the one the run recorded.

        ``data`` is the new run's `describe_data`; ``labels`` names each part (``train``,
        ``validation``) in the error, as the caller's argument or option. A checksum the
        run did not record (a run from before checksums were recorded) is unknown and not
        checked; a dataset added or removed is left to the options' comparison.

        Raises:
            RunDirError: a dataset's manifest checksum differs from the recorded one.
        """
        if not self.config.is_file():
            return
        saved = self.read_config().get("data")
        if not isinstance(saved, dict):
            return  # not a run's config.json: the options' comparison names it
        for part, key in CHECKSUM_KEYS.items():
            recorded, found = saved.get(key), data.get(key)
            if recorded is None or found is None or recorded == found:
                continue
            raise RunDirError(f"{labels[part]} holds another dataset than the run {self.root} "
                              f"was trained on (manifest checksum {found}, the run recorded "
                              f"{recorded}); resume with the same data or start a new run")

    def checkpoint(self, step: int) -> Path:
        """Checkpoint written after ``step`` training steps in all."""
        return self.checkpoints / f"step-{step:08d}.keras"

    def saved_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for path in self.checkpoints.iterdir():
            match = CHECKPOINT_PATTERN.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest (step, path), or None."""
        found = self.saved_checkpoints()
        return found[-1] if found else None

    def stamp(self, step: int) -> Path:
        """The stamp of the checkpoint of ``step``: which run wrote it, and what model."""
        return self.checkpoints / f"step-{step:08d}.json"

    def write_stamp(self, step: int, stamp: Mapping[str, Any]) -> None:
        """Write the stamp of ``step``'s checkpoint (before the checkpoint itself, so that
        no checkpoint of this run is ever without one)."""
        write_text_atomic(self.stamp(step), json.dumps({**stamp, "step": step},
                                                       sort_keys=True) + "\n")

    def read_stamp(self, step: int) -> dict[str, Any] | None:
        """The stamp of ``step``'s checkpoint; None if it has none.

        Raises:
            RunDirError: the stamp cannot be read as a JSON object.
        """
        if not self.stamp(step).exists():
            return None
        return _read_json_object(self.stamp(step))

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the ``keep`` newest checkpoints, and the stamps of the others."""
        saved = self.saved_checkpoints()
        for _, path in saved[:-keep]:
            path.unlink(missing_ok=True)
        kept = {step for step, _ in saved[-keep:]}
        for path in self.checkpoints.iterdir():
            match = STAMP_PATTERN.fullmatch(path.name)
            if match and int(match.group(1)) not in kept:
                path.unlink(missing_ok=True)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_regular_text(path, JSON_LIMIT))
    except (OSError, ValueError, RecursionError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RunDirError(f"{path} cannot be read as JSON: {detail}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path} holds {type(data).__name__}, expected an object")
    return data
