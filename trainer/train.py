"""Training runs: fit the model on a dataset into a run directory, resumably."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from seqdata.atomic import write_text_atomic
from seqdata.batching import BatchConfig
from trainer.callbacks import EpochStats, RunRecorder, StepRecorder, truncate_batch_log
from trainer.data import (
    BatchSource,
    BatchStream,
    NoBatchesError,
    to_tf_dataset,
)
from trainer.errors import ModelFileError, RunDirError, TrainerError
from trainer.history import Row, plot_curves, read_history_csv
from trainer.model import ModelConfig, build_model, compile_model, load_model, save_model
from trainer.run_dir import RunDir

RESUMABLE_KEYS_IGNORED = ("epochs", "checkpoint_every", "checkpoints_kept")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, except the data itself.

    Args:
        batching: how training batches are made (its seed also seeds the weights).
        epochs: total epochs of the run (a resumed run continues up to it).
        steps_per_epoch: batches per epoch; None is one pass over the data. More than one
            pass continues into the next data epoch's batches.
        model: the model and optimizer settings.
        checkpoints_kept: how many of the latest checkpoints to keep.
        checkpoint_every: also checkpoint every this many steps (mid-epoch), so that a
            killed run resumes at the exact step; None: at epoch ends only.
        log_batches: append the ids of every trained step to RUN/batches.jsonl.

    >>> TrainConfig(BatchConfig(batch_size=32), epochs=2).epochs
    2
    """

    batching: BatchConfig
    epochs: int = 1
    steps_per_epoch: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoints_kept: int = 3
    checkpoint_every: int | None = None
    log_batches: bool = False

    def __post_init__(self) -> None:
        for name, value in (("epochs", self.epochs), ("steps_per_epoch", self.steps_per_epoch),
                            ("checkpoints_kept", self.checkpoints_kept),
                            ("checkpoint_every", self.checkpoint_every)):
            if value is None and name in ("steps_per_epoch", "checkpoint_every"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as saved in RUN/config.json."""
        return {"batching": asdict(self.batching), "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "model": self.model.to_dict(),
                "checkpoints_kept": self.checkpoints_kept,
                "checkpoint_every": self.checkpoint_every, "log_batches": self.log_batches}


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    run: RunDir
    history: list[Row]
    initial_step: int  # training steps already done when this call started
    steps_per_epoch: int

    @property
    def initial_epoch(self) -> int:
        """Complete epochs already done when this call started."""
        return self.initial_step // self.steps_per_epoch


def validation_options(batching: BatchConfig) -> BatchConfig:
    """Batches for validation: the training sizes, all lengths mixed, one fixed order."""
    return replace(batching, same_length=False, drop_remainder=False)


def _check_resumable(saved: dict[str, Any], config: TrainConfig, data: dict[str, Any],
                     run: RunDir) -> None:
    new = {"train": config.to_dict(), "data": data}
    old = {"train": saved.get("train"), "data": saved.get("data")}
    for key in RESUMABLE_KEYS_IGNORED:
        for cfg in (new["train"], old["train"]):
            if isinstance(cfg, dict):
                cfg.pop(key, None)
    if new != old:
        diff = _differences(old, new)
        raise RunDirError(f"cannot resume {run.root}: options differ from its config.json "
                          f"({diff}); resume with the same options (only --epochs may change)")


def _differences(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        parts = [_differences(old.get(k), new.get(k), f"{prefix}{k}.")
                 for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')}: was {old!r}, now {new!r}"


def _start_state(run: RunDir, config: TrainConfig, num_features: int, resume: bool,
                 steps: int) -> tuple[keras.Model, int, list[Row]]:
    """(model, steps already trained, history rows of the epochs already complete)."""
    loaded = _load_latest_checkpoint(run) if resume else None
    if loaded is None:
        keras.utils.set_random_seed(config.batching.seed)
        model = compile_model(build_model(num_features, config.model),
                              config.model.learning_rate)
        return model, 0, []
    done, model = loaded
    model.jit_compile = False
    rows = [row for row in read_history_csv(run.history)
            if row.get("epoch", 0) <= done // steps]
    return model, done, rows


def _load_latest_checkpoint(run: RunDir) -> tuple[int, keras.Model] | None:
    """The newest checkpoint that loads; a damaged one falls back to the one before it."""
    damaged = []
    for epoch, path in reversed(run.saved_checkpoints()):
        try:
            model = load_model(path, compile=True)
        except ModelFileError as exc:
            damaged.append(path.name)
            print(f"trainer train: warning: {exc}; falling back to an earlier checkpoint",
                  file=sys.stderr)
            continue
        return epoch, model
    if damaged:
        raise RunDirError(f"cannot resume {run.root}: every checkpoint is damaged "
                          f"({', '.join(damaged)})")
    return None


def _validation_dataset(stream: BatchStream | None,
                        num_features: int) -> tf.data.Dataset | None:
    if stream is None:
        return None
    return to_tf_dataset(stream, num_features, stream.epoch_size(0))


def train(run_root: str | os.PathLike[str], config: TrainConfig, source: BatchSource, *,
          num_features: int, validation: BatchSource | None = None,
          data: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
          verbose: int | str = "auto", echo: Callable[[str], None] = print) -> TrainResult:
    """Train into ``run_root``: config.json, per-epoch history/metrics/logs/checkpoints,
    then model.keras and curves.png.

    If a new run fails before its first epoch is recorded (bad data, interrupt), what it
    wrote is removed again, so the directory can be used as if never tried.

    Args:
        run_root: the run directory (new or empty, or see ``resume``/``overwrite``).
        config: the training configuration.
        source: the training data.
        num_features: F of the data.
        validation: optional held-out data, evaluated after each epoch.
        data: a JSON-ready description of the data (paths), recorded and checked on resume.
        resume: continue a run from its latest checkpoint (same options; epochs may grow).
        overwrite: delete a previous run's artifacts first.
        verbose: Keras progress output (0, 1, 2 or "auto").
        echo: where to print the per-epoch summary lines.
    """
    run = RunDir(Path(run_root))
    existed, fresh = run.root.exists(), run.is_empty() or overwrite
    run.prepare(resume=resume, overwrite=overwrite)
    rows: list[Row] = []
    try:
        return _train_in(run, config, source, num_features, validation, dict(data or {}),
                         resume, rows, verbose, echo)
    except BaseException:
        if fresh and not rows:
            run.clear()
            if not existed:
                run.root.rmdir()
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_metrics(run: RunDir, config: TrainConfig, data: dict[str, Any], steps: int,
                   history: list[Row], complete: bool = False) -> None:
    write_json(run.metrics, {
        "complete": complete, "epochs": config.epochs,
        "epochs_completed": int(history[-1]["epoch"]) if history else 0,
        "steps_per_epoch": steps, "final": history[-1] if history else {},
        "history": history, "config": config.to_dict(), "data": data,
        "model": run.model.name if complete else None,
        "logs": run.logs.name, "checkpoints": run.checkpoints.name})


def _fit(model: keras.Model, config: TrainConfig, source: BatchSource,
         validation: BatchSource | None, num_features: int, run: RunDir, rows: list[Row],
         write_metrics: Callable[[list[Row]], None], steps: int, verbose: int | str,
         echo: Callable[[str], None], first_step: int, epoch: int, epoch_steps: int) -> None:
    """Train from global step ``first_step`` (in epoch ``epoch``) to the last epoch; the
    first epoch has ``epoch_steps`` steps (fewer when it resumes mid-epoch)."""
    stream = BatchStream(source, config.batching, start=first_step)
    val_stream = (BatchStream(validation, validation_options(config.batching), repeat=False)
                  if validation is not None else None)
    last = epoch + 1 if epoch_steps < steps else config.epochs
    # Keras' progress bar goes between: it then shows the stats, and the summary follows.
    callbacks = [EpochStats(stream, steps), keras.callbacks.ProgbarLogger(),
                 RunRecorder(run, rows, config.epochs, steps, write_metrics,
                             keep=config.checkpoints_kept, echo=echo),
                 StepRecorder(run, stream, first_step, steps, config.checkpoint_every,
                              config.checkpoints_kept, config.log_batches)]
    try:
        model.fit(to_tf_dataset(stream, num_features), epochs=last, initial_epoch=epoch,
                  steps_per_epoch=epoch_steps, shuffle=False,
                  validation_data=_validation_dataset(val_stream, num_features),
                  callbacks=callbacks, verbose=verbose)
    except tf.errors.OpError as exc:
        for failed in (stream, val_stream):
            if failed is not None and failed.error is not None:
                raise failed.error from exc
        raise


def _train_in(run: RunDir, config: TrainConfig, source: BatchSource, num_features: int,
              validation: BatchSource | None, data: dict[str, Any], resume: bool,
              rows: list[Row], verbose: int | str,
              echo: Callable[[str], None]) -> TrainResult:
    if resume and run.config.is_file():
        _check_resumable(run.read_config(), config, data, run)
    per_pass = BatchStream(source, config.batching).epoch_size(0)
    if per_pass < 1:
        raise NoBatchesError(0, config.batching)
    steps = config.steps_per_epoch or per_pass
    model, done, kept = _start_state(run, config, num_features, resume, steps)
    rows.extend(kept)
    epoch, into = divmod(done, steps)
    if done > config.epochs * steps:
        raise RunDirError(f"cannot resume {run.root} to {config.epochs} epochs: it has "
                          f"{epoch} already (give --epochs {epoch} or more)")
    write_json(run.config, {"train": config.to_dict(), "data": data})
    truncate_batch_log(run.batch_log, done)
    write_metrics = partial(_write_metrics, run, config, data, steps)
    if into:
        echo(f"resuming {run.root} at step {done}: step {into + 1} of {steps} in epoch "
             f"{epoch + 1} of {config.epochs}")
    elif epoch:
        echo(f"resuming {run.root} after epoch {epoch} of {config.epochs}")
    fit = partial(_fit, model, config, source, validation, num_features, run, rows,
                  write_metrics, steps, verbose, echo)
    if into:  # finish the interrupted epoch from the exact step
        fit(done, epoch, steps - into)
        epoch += 1
    if epoch < config.epochs:
        fit(epoch * steps, epoch, steps)
    if len(rows) < config.epochs:
        raise TrainerError(f"training stopped after epoch {len(rows)} of {config.epochs}: "
                           "the data ran out of batches")
    save_model(model, run.model)
    plot_curves(rows, run.curves)
    write_metrics(rows, complete=True)
    return TrainResult(run, rows, done, steps)
