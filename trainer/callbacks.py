"""Keras callbacks: per-epoch throughput and padding, and the run's records."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from seqdata.read.stream import BatchStream
from seqdata.store.atomic import write_text_atomic
from trainer.history import Row, ScalarWriter, write_history_csv
from trainer.model import MASKED_ACCURACY, save_model
from trainer.run_dir import RunDir
from trainer.schedule import current_learning_rate

VAL_ACCURACY = f"val_{MASKED_ACCURACY}"


class EpochStats(keras.callbacks.Callback):
    """Adds ``timesteps_per_sec`` (real steps), ``padding_fraction`` and ``seconds`` to
    each epoch's logs, from the stats the stream kept for that epoch's batches.

    Keras epoch ``k`` (0-based, counting resumed epochs) consumes stream batches
    ``k * steps_per_epoch .. (k + 1) * steps_per_epoch - 1``.
    """

    def __init__(self, stream: BatchStream, steps_per_epoch: int) -> None:
        super().__init__()
        self.stream = stream
        self.steps_per_epoch = steps_per_epoch
        self._start = self._last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        first = epoch * self.steps_per_epoch
        real, total = self.stream.take_stats(first, first + self.steps_per_epoch)
        seconds = max(self._last - self._start, 1e-9)
        logs["timesteps_per_sec"] = real / seconds
        logs["padding_fraction"] = 1.0 - real / total if total else 0.0
        logs["seconds"] = seconds


def format_row(row: Row, epochs: int) -> str:
    """One human line for an epoch's row."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}:"]
    for key in ("loss", "masked_accuracy", "val_masked_loss", "val_masked_accuracy"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    if "timesteps_per_sec" in row:
        parts.append(f"{row['timesteps_per_sec']:,.0f} real timesteps/s")
    if "padding_fraction" in row:
        parts.append(f"padding {100 * row['padding_fraction']:.1f}%")
    return ", ".join(parts[:1]) + " " + ", ".join(parts[1:])


def save_checkpoint(run: RunDir, model: keras.Model, step: int, stamp: dict[str, Any],
                    keep: int) -> None:
    """The checkpoint of ``step`` with its stamp, then all but the ``keep`` newest removed.

    The stamp is written first: a kill between the two leaves a stamp without a
    checkpoint (ignored, pruned later), never a checkpoint of this run without a stamp.
    """
    run.write_stamp(step, stamp)
    save_model(model, run.checkpoint(step))
    run.prune_checkpoints(keep)


class RunRecorder(keras.callbacks.Callback):
    """After each epoch: best.keras if the validation masked accuracy is the best so far,
    history.csv (with the learning rate at the epoch's end), metrics.json
    (``write_metrics()``), TensorBoard scalars, then a checkpoint stamped with ``stamp``
    (the latest ``keep`` kept), and a printed summary line. With ``stop_at_accuracy``,
    training stops after the first epoch whose validation masked accuracy reaches it.

    History is written before the checkpoint, so a checkpoint's epoch always has its row.
    """

    def __init__(self, run: RunDir, rows: list[Row], epochs: int, steps_per_epoch: int,
                 write_metrics: Callable[[], None], *, stamp: dict[str, Any], keep: int = 3,
                 echo: Callable[[str], None] = print,
                 stop_at_accuracy: float | None = None) -> None:
        super().__init__()
        self.stop_at_accuracy = stop_at_accuracy
        self.run, self.stamp = run, stamp
        self.steps_per_epoch = steps_per_epoch
        self.rows = rows
        self.epochs = epochs
        self.write_metrics = write_metrics
        self.keep = keep
        self.echo = echo
        self.scalars = ScalarWriter(run.logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row: Row = {"epoch": float(epoch + 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()
                    if isinstance(v, int | float) or getattr(v, "shape", None) == ()})
        row["learning_rate"] = current_learning_rate(self.model.optimizer)
        accuracy = row.get(VAL_ACCURACY)
        if accuracy is not None and accuracy > max(
                (r.get(VAL_ACCURACY, -1.0) for r in self.rows), default=-1.0):
            # Before the row: a kill in between re-trains this epoch, identically.
            save_model(self.model, self.run.best, portable=True)
        if self.stop_at_accuracy is not None and (accuracy or 0.0) >= self.stop_at_accuracy:
            self.model.stop_training = True
        self.rows.append(row)
        write_history_csv(self.rows, self.run.history)
        self.write_metrics()
        self.scalars.write(row)
        save_checkpoint(self.run, self.model, (epoch + 1) * self.steps_per_epoch, self.stamp,
                        self.keep)
        self.echo(format_row(row, self.epochs))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.scalars.close()


class StepRecorder(keras.callbacks.Callback):
    """Per training step: the batch log (``--log-batches``: the ids of each step appended
    to ``log``) and mid-epoch checkpoints.

    Step ``n`` (1-based, counted over the whole run) trained stream batch ``n - 1``. A
    checkpoint (stamped with ``stamp``) is saved after every ``every`` steps except at
    epoch ends, which `RunRecorder` saves once the epoch's history row is written.
    """

    def __init__(self, run: RunDir, stream: BatchStream, first_step: int,
                 steps_per_epoch: int, every: int | None, keep: int, log: Path | None, *,
                 stamp: dict[str, Any]) -> None:
        super().__init__()
        self.run, self.stream, self.stamp = run, stream, stamp
        self.step = first_step
        self.steps_per_epoch, self.every, self.keep = steps_per_epoch, every, keep
        self.log = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.log is not None:
            self.rate = current_learning_rate(self.model.optimizer)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        index = self.step
        self.step += 1
        if self.log is not None:
            ids = self.stream.take_ids(index).tolist()
            entry = {"step": self.step, "learning_rate": self.rate, "ids": ids}
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()
        else:
            self.stream.forget_ids(index + 1)
        if self.every and self.step % self.every == 0 and self.step % self.steps_per_epoch:
            save_checkpoint(self.run, self.model, self.step, self.stamp, self.keep)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.log is not None:
            self.log.close()


def truncate_batch_log(path: Path, last_step: int) -> None:
    """Keep the log's lines of steps up to ``last_step``: the history of a checkpoint."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a torn last line from a kill
    write_text_atomic(path, "".join(k + "\n" for k in kept))
