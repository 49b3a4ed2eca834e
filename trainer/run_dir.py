"""The layout of a training run directory, and its checks for a new, resumed or
overwritten run.

    RUN/config.json        the training configuration (written first; used by --resume)
    RUN/model.keras        the final model (written last)
    RUN/history.csv        one row per epoch
    RUN/metrics.json       history, final metrics and where things are
    RUN/curves.png         loss and masked accuracy per epoch
    RUN/logs/              TensorBoard event files (train/, validation/)
    RUN/checkpoints/       step-NNNNNNNN.keras after each epoch and every --checkpoint-every
                           steps (the latest few kept)
    RUN/batches.jsonl      with --log-batches: the ids each training step used, in order
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import RunDirError

CHECKPOINT_PATTERN = re.compile(r"step-(\d{8,})\.keras")


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

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

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
        return (self.config, self.model, self.history, self.metrics, self.curves, self.logs,
                self.checkpoints, self.batch_log)

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
        try:
            data = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.config} cannot be read as JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RunDirError(f"{self.config} holds {type(data).__name__}, expected an object")
        return data

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

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the ``keep`` newest checkpoints."""
        for _, path in self.saved_checkpoints()[:-keep]:
            path.unlink(missing_ok=True)
