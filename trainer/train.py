"""Training runs: fit the model on a dataset into a run directory, resumably."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras

from seqdata.checks import check_int, check_number
from seqdata.keras import keras_input
from seqdata.read.config import BatchConfig
from seqdata.read.stream import BatchSource, BatchStream, NoBatchesError
from seqdata.store.atomic import write_text_atomic
from trainer.backend import backend, for_backend
from trainer.callbacks import (
    VAL_ACCURACY,
    EpochStats,
    RunRecorder,
    StepRecorder,
    truncate_batch_log,
)
from trainer.distribute import Placement, fitting, per_worker, placement_of, scope
from trainer.errors import ConfigError, ModelFileError, RunDirError, TrainerError
from trainer.history import Row, plot_curves, read_history_csv
from trainer.model import (
    ModelConfig,
    architecture,
    architecture_of,
    build_model,
    compile_model,
    load_model,
    out_of_memory_is_an_error,
    save_model,
)
from trainer.run_dir import CHECKSUM_KEYS, RunDir, describe_data
from trainer.schedule import ScheduleConfig

RESUMABLE_KEYS_IGNORED = ("epochs", "checkpoint_every", "checkpoints_kept", "stop_at_accuracy")
# Keys added after runs were first recorded, with the value such a run had.
LATER_KEYS = {"schedule": ScheduleConfig().to_dict()}


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
        log_batches: append the ids (and learning rate) of every trained step to
            RUN/batches.jsonl.
        schedule: how the learning rate moves over the run's ``epochs`` (a resumed run
            keeps the schedule its checkpoint holds).
        stop_at_accuracy: with validation data, end the run after the first epoch whose
            validation masked accuracy reaches it.

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
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    stop_at_accuracy: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.batching, BatchConfig):
            raise ConfigError(f"batching must be a BatchConfig, got {self.batching!r}")
        for name in ("epochs", "checkpoints_kept"):
            check_int(name, getattr(self, name), 1, error=ConfigError)
        for name in ("steps_per_epoch", "checkpoint_every"):
            check_int(name, getattr(self, name), 1, optional=True, error=ConfigError)
        if not isinstance(self.schedule, ScheduleConfig):
            raise ConfigError(f"schedule must be a ScheduleConfig, got {self.schedule!r}")
        if self.stop_at_accuracy is not None:
            check_number("stop_at_accuracy", self.stop_at_accuracy, positive=True,
                         error=ConfigError)
            if self.stop_at_accuracy > 1:
                raise ConfigError(f"stop_at_accuracy must be in (0, 1], got "
                                  f"{self.stop_at_accuracy}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as saved in RUN/config.json."""
        return {"batching": self.batching.to_dict(), "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "model": self.model.to_dict(),
                "checkpoints_kept": self.checkpoints_kept,
                "checkpoint_every": self.checkpoint_every, "log_batches": self.log_batches,
                "schedule": self.schedule.to_dict(), "stop_at_accuracy": self.stop_at_accuracy}


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    run: RunDir
    history: list[Row]
    initial_step: int  # training steps already done when this call started
    steps_per_epoch: int
    model: keras.Model  # the trained model (what model.keras holds)

    @property
    def final_step(self) -> int:
        """Training steps done when this call ended."""
        return int(self.history[-1]["epoch"]) * self.steps_per_epoch if self.history else 0

    @property
    def initial_epoch(self) -> int:
        """Complete epochs already done when this call started."""
        return self.initial_step // self.steps_per_epoch


def validation_options(batching: BatchConfig) -> BatchConfig:
    """Batches for validation: the training sizes, all lengths mixed, one fixed order."""
    return replace(batching, same_length=False, drop_remainder=False)


def _check_resumable(saved: dict[str, Any], config: TrainConfig, data: dict[str, Any],
                     run: RunDir) -> None:
    new = {"train": config.to_dict(), "data": dict(data)}
    old = {"train": saved.get("train"), "data": saved.get("data")}
    for key in RESUMABLE_KEYS_IGNORED:
        for cfg in (new["train"], old["train"]):
            if isinstance(cfg, dict):
                cfg.pop(key, None)
    if isinstance(old["train"], dict):
        old["train"] = {**LATER_KEYS, **old["train"]}
    for key in CHECKSUM_KEYS.values():  # a run from before checksums were recorded
        if not isinstance(old["data"], dict) or key not in old["data"]:
            new["data"].pop(key, None)
    if new != old:
        diff = _differences(old, new)
        raise RunDirError(f"cannot resume {run.root}: options differ from its config.json "
                          f"({diff}); resume with the same options (only epochs may change)")


def _differences(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        parts = [_differences(old.get(k), new.get(k), f"{prefix}{k}.")
                 for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')}: was {old!r}, now {new!r}"


def _check_stamp(run: RunDir, step: int, path: Path, run_id: str | None) -> None:
    """Refuse a checkpoint that this run did not write, by its stamp."""
    refuse = f"cannot resume {run.root}: checkpoint {path}"
    move = (f"; move it out of {run.checkpoints} to resume from the checkpoint before it, "
            "or start a new run")
    try:
        stamp = run.read_stamp(step)
    except RunDirError as exc:
        raise RunDirError(f"{refuse} has a stamp that cannot be read ({exc}){move}") from exc
    if stamp is None:
        if run_id is None:
            return  # a run from before stamps: only the architecture can be checked
        raise RunDirError(f"{refuse} has no stamp {run.stamp(step).name}, so this run did "
                          f"not write it{move}")
    owner, at = stamp.get("run_id"), stamp.get("step")
    if owner != run_id or at != step:
        raise RunDirError(f"{refuse} was written by another run (its stamp says run "
                          f"{owner!r}, step {at!r}; this is run {run_id!r}, step {step}){move}")


def _load_latest_checkpoint(run: RunDir, run_id: str | None,
                            expected: str) -> tuple[int, keras.Model] | None:
    """The newest checkpoint that loads; a damaged one falls back to the one before it.

    A checkpoint that loads but is not this run's (its stamp is missing or names another
    run or step) or holds another model than ``expected`` is refused, not skipped: it
    would otherwise stay the newest, outlive this run's own checkpoints when they are
    pruned, and be met again on every resume.
    """
    damaged = []
    for step, path in reversed(run.saved_checkpoints()):
        _check_stamp(run, step, path, run_id)
        try:
            model = load_model(path, compile=True)
        except ModelFileError as exc:
            damaged.append(path.name)
            print(f"trainer train: warning: {exc}; falling back to an earlier checkpoint",
                  file=sys.stderr)
            continue
        found = architecture_of(model)
        if found != expected:
            raise RunDirError(f"cannot resume {run.root}: checkpoint {path} holds {found}, "
                              f"but the run's model is {expected}; move it out of "
                              f"{run.checkpoints} to resume from the checkpoint before it, "
                              "or start a new run")
        return step, model
    if damaged:
        raise RunDirError(f"cannot resume {run.root}: every checkpoint is damaged "
                          f"({', '.join(damaged)})")
    return None


def train(run_root: str | os.PathLike[str], config: TrainConfig, source: BatchSource, *,
          num_features: int, validation: BatchSource | None = None,
          data: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
          verbose: int | str = "auto", echo: Callable[[str], None] = print,
          strategy: Any = None) -> TrainResult:
    """Train into ``run_root``: config.json, per-epoch history/metrics/logs/checkpoints,
    then model.keras and curves.png.

    If a new run fails before its first epoch is recorded (bad data, interrupt), what it
    wrote is removed again, so the directory can be used as if never tried.

    Args:
        run_root: the run directory (new or empty, or see ``resume``/``overwrite``).
        config: the training configuration (on JAX, with ``static_shapes`` batching).
        source: the training data.
        num_features: F of the data.
        validation: optional held-out data, evaluated after each epoch.
        data: a JSON-ready description of the data (paths), recorded and checked on resume.
            The manifest checksums of ``source`` and ``validation`` (`seqdata.Dataset`
            has one) are added as ``train_checksum`` and ``validation_checksum``.
        resume: continue a run from its latest checkpoint (same options and data; epochs
            may grow). The data must have the manifest checksums the run recorded (a run
            from before they were recorded is resumed without that check); the checkpoint
            must carry this run's stamp and hold its model.
        overwrite: delete a previous run's artifacts first.
        verbose: Keras progress output (0, 1, 2 or "auto").
        echo: where to print the per-epoch summary lines.
        strategy: a ``tf.distribute`` strategy to train under (`trainer.distribute`;
            TensorFlow backend). Under a multi-worker one, each worker trains its rank's
            share of every global batch; ``run_root`` must be one directory that every
            worker sees (a shared file system): the chief (rank 0) writes it, and every
            worker resumes from its checkpoints. The others record into a scratch
            directory, removed at the end, except their share of the batch log
            (``log_batches``: ``batches.rank-R.jsonl``). config.json does not record the
            number of workers: a run resumes on any number of them.
    """
    if config.stop_at_accuracy is not None and validation is None:
        raise ConfigError(f"stop_at_accuracy={config.stop_at_accuracy} needs validation data "
                          "to measure it on")
    if strategy is not None and backend() != "tensorflow":
        raise ConfigError(f"a tf.distribute strategy needs the tensorflow backend, not "
                          f"{backend()} (set KERAS_BACKEND=tensorflow)")
    run = RunDir(Path(run_root))
    # JAX compiles a step per input shape: it trains on static shapes, recorded as such.
    config = replace(config, batching=for_backend(config.batching))
    placement = placement_of(strategy)
    # Workers other than the chief record into a scratch directory, removed at the end,
    # and print nothing per epoch; they only read ``run`` (to resume from it).
    scratch = None if placement.records else RunDir(
        Path(tempfile.mkdtemp(prefix=f"trainer-rank-{placement.rank}-")))
    existed, fresh = run.root.exists(), run.is_empty() or overwrite
    if scratch is None:
        run.prepare(resume=resume, overwrite=overwrite)
    state = TrainingRun(run, config, source, validation, num_features,
                        describe_data(data, source, validation), verbose,
                        echo if scratch is None else (lambda _: None),
                        strategy=strategy, placement=placement, out=scratch)
    try:
        with out_of_memory_is_an_error(f"training {architecture(num_features, config.model)}"):
            return replace(state.train(resume), run=run)
    except BaseException:
        if scratch is None and fresh and not state.rows:
            run.clear()
            if not existed:
                run.root.rmdir()
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch.root, ignore_errors=True)


def _label(argument: str, path: Any) -> str:
    return f"{argument} ({path})" if path else argument


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass
class TrainingRun:
    """A run in progress: what it trains on, where it records, and how far it got.

    ``rows`` holds the history of every complete epoch (resumed ones included) and grows
    as epochs end; ``steps`` is the number of steps an epoch has, known once the data is.
    ``run_id`` names the run in config.json and in every checkpoint's stamp (None for a
    run from before run ids were recorded).
    """

    run: RunDir
    config: TrainConfig
    source: BatchSource
    validation: BatchSource | None
    num_features: int
    data: dict[str, Any]
    verbose: int | str = "auto"
    echo: Callable[[str], None] = print
    strategy: Any = None
    placement: Placement = field(default_factory=Placement)
    out: RunDir | None = None  # where records go (None: ``run``; a scratch one on workers)
    rows: list[Row] = field(default_factory=list)
    steps: int = 0
    model: keras.Model | None = None
    run_id: str | None = None

    @property
    def records(self) -> RunDir:
        """Where this process writes the run's records."""
        return self.out or self.run

    @property
    def batching(self) -> BatchConfig:
        """The training batches of this process: its rank's share of the global ones."""
        rank, ranks = self.placement.rank, self.placement.num_ranks
        if ranks == 1:
            return self.config.batching
        return replace(self.config.batching, rank=rank, num_ranks=ranks)

    def train(self, resume: bool) -> TrainResult:
        """Check, restore (with ``resume``), fit the remaining epochs, save the model."""
        config, run = self.config, self.run
        if resume and run.config.is_file():
            saved = run.read_config()
            run.check_same_data(self.data, {part: _label(arg, self.data.get(part)) for part, arg
                                            in (("train", "source"),
                                                ("validation", "validation"))})
            _check_resumable(saved, config, self.data, run)
            self.run_id = saved.get("run_id")
            if not isinstance(self.run_id, str | None):
                raise RunDirError(f"{run.config} holds run_id {self.run_id!r}, expected a "
                                  "string")
        else:
            self.run_id = uuid.uuid4().hex
        per_pass = BatchStream(self.source, config.batching).epoch_size(config.batching.epoch)
        if per_pass < 1:
            raise NoBatchesError(config.batching.epoch, config.batching)
        self.steps = config.steps_per_epoch or per_pass
        with scope(self.strategy):
            done = self._restore() if resume else 0
            if done == 0:
                keras.utils.set_random_seed(config.batching.seed)
                rate = config.schedule.learning_rate(config.model.learning_rate,
                                                     config.epochs * self.steps)
                self.model = compile_model(build_model(self.num_features, config.model), rate)
        epoch, into = divmod(done, self.steps)
        if done > config.epochs * self.steps:
            raise RunDirError(f"cannot resume {run.root} to {config.epochs} epochs: it has "
                              f"{epoch} already (give epochs={epoch} or more)")
        if self.out is not None:
            self.out.prepare()
        write_json(self.records.config, {"train": config.to_dict(), "data": self.data,
                                         "run_id": self.run_id})
        self.truncate_batch_logs(done)
        if into:
            self.echo(f"resuming {run.root} at step {done}: step {into + 1} of {self.steps} "
                      f"in epoch {epoch + 1} of {config.epochs}")
        elif epoch:
            self.echo(f"resuming {run.root} after epoch {epoch} of {config.epochs}")
        if into:  # finish the interrupted epoch from the exact step
            self.fit(done, epoch, self.steps - into)
            epoch += 1
        if epoch < config.epochs and not self.reached_target():
            self.fit(epoch * self.steps, epoch, self.steps)
        if len(self.rows) < config.epochs and not self.reached_target():
            raise TrainerError(f"training stopped after epoch {len(self.rows)} of "
                               f"{config.epochs}: the data ran out of batches")
        save_model(self.model, self.records.model, portable=True)
        plot_curves(self.rows, self.records.curves)
        self.write_metrics(complete=True)
        return TrainResult(self.records, self.rows, done, self.steps, self.model)

    def truncate_batch_logs(self, done: int) -> None:
        """Cut the batch logs back to the ``done`` steps of the checkpoint: this rank's,
        and on the chief those of ranks that a larger run had and this one has not."""
        rank, ranks = self.placement.rank, self.placement.num_ranks
        truncate_batch_log(self.run.batch_log_of(rank), done)
        if self.placement.records:
            for other, path in self.run.rank_batch_logs():
                if other >= ranks:
                    truncate_batch_log(path, done)

    def _restore(self) -> int:
        """Load the latest checkpoint and the history it has; the steps it trained."""
        loaded = _load_latest_checkpoint(self.run, self.run_id, self.architecture)
        if loaded is None:
            return 0
        done, self.model = loaded
        self.model.jit_compile = keras.backend.backend() == "jax"
        self.rows[:] = [row for row in read_history_csv(self.run.history)
                        if row.get("epoch", 0) <= done // self.steps]
        return done

    @property
    def architecture(self) -> str:
        """The run's model, in words (`trainer.model.architecture`)."""
        return architecture(self.num_features, self.config.model)

    def reached_target(self) -> bool:
        """The last epoch reached ``stop_at_accuracy`` on the validation data."""
        target = self.config.stop_at_accuracy
        return (target is not None and bool(self.rows)
                and self.rows[-1].get(VAL_ACCURACY, 0.0) >= target)

    def best(self) -> dict[str, Any] | None:
        """The epoch with the best validation masked accuracy (the first of equals), and
        its model file, or None without validation."""
        scored = [row for row in self.rows if VAL_ACCURACY in row]
        if not scored:
            return None
        row = max(scored, key=lambda r: r[VAL_ACCURACY])
        return {"epoch": int(row["epoch"]), VAL_ACCURACY: row[VAL_ACCURACY],
                "model": self.records.best.name}

    def write_metrics(self, complete: bool = False) -> None:
        """metrics.json from the rows so far."""
        history, run = self.rows, self.records
        write_json(run.metrics, {
            "best": self.best(), "stopped_at_accuracy": self.reached_target(),
            "complete": complete, "epochs": self.config.epochs,
            "epochs_completed": int(history[-1]["epoch"]) if history else 0,
            "steps_per_epoch": self.steps, "final": history[-1] if history else {},
            "history": history, "config": self.config.to_dict(), "data": self.data,
            "run_id": self.run_id,
            "model": run.model.name if complete else None,
            "logs": run.logs.name, "checkpoints": run.checkpoints.name})

    def input(self, data: Any) -> Any:
        """``fit``'s input from the Keras input of this process's batches."""
        return data if self.strategy is None else per_worker(data, self.strategy,
                                                             self.placement)

    def fit(self, first_step: int, epoch: int, epoch_steps: int) -> None:
        """Train from global step ``first_step`` (in epoch ``epoch``) to the last epoch;
        the first epoch has ``epoch_steps`` steps (fewer when it resumes mid-epoch)."""
        config, run = self.config, self.records
        stream = BatchStream(self.source, self.batching, start=first_step, track=True)
        val_stream = (BatchStream(self.validation,
                                  for_backend(validation_options(self.batching)),
                                  repeat=False) if self.validation is not None else None)
        last = epoch + 1 if epoch_steps < self.steps else config.epochs
        stamp = {"run_id": self.run_id, "model": self.architecture}
        # Keras' progress bar goes between: it then shows the stats, and the summary follows.
        callbacks = [EpochStats(stream, self.steps), keras.callbacks.ProgbarLogger(),
                     RunRecorder(run, self.rows, config.epochs, self.steps, self.write_metrics,
                                 stamp=stamp, keep=config.checkpoints_kept, echo=self.echo,
                                 stop_at_accuracy=config.stop_at_accuracy),
                     StepRecorder(run, stream, first_step, self.steps, config.checkpoint_every,
                                  config.checkpoints_kept,
                                  self.run.batch_log_of(self.placement.rank)
                                  if config.log_batches else None, stamp=stamp)]
        validation_data = None if val_stream is None else self.input(keras_input(
            val_stream, self.num_features, val_stream.epoch_size(val_stream.config.epoch)))
        try:
            with fitting(self.model, self.strategy):
                self.model.fit(self.input(keras_input(stream, self.num_features)),
                               epochs=last, initial_epoch=epoch, steps_per_epoch=epoch_steps,
                               shuffle=False, validation_data=validation_data,
                               callbacks=callbacks, verbose=self.verbose)
        except Exception as exc:
            # tf.data wraps an error of the batch stream in its own: raise the original.
            for failed in (stream, val_stream):
                if failed is not None and failed.error is not None:
                    raise failed.error from exc
            raise
