"""Per-epoch history rows: history.csv, TensorBoard scalars and curves.png."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from seqdata.store.atomic import atomic_output, write_text_atomic
from trainer.events import EventWriter

Row = dict[str, float]

FIRST_COLUMNS = ("epoch", "loss", "masked_loss", "masked_accuracy", "val_loss",
                 "val_masked_loss", "val_masked_accuracy", "timesteps_per_sec",
                 "padding_fraction", "seconds")


def columns_of(rows: Sequence[Row]) -> list[str]:
    """The known columns in a fixed order, then any others sorted."""
    present = {key for row in rows for key in row}
    return ([c for c in FIRST_COLUMNS if c in present]
            + sorted(present.difference(FIRST_COLUMNS)))


def write_history_csv(rows: Sequence[Row], path: str | os.PathLike[str]) -> None:
    """Write the rows as CSV (atomically); missing values are empty cells."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns_of(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if k == "epoch" else repr(float(v)))
                         for k, v in row.items()})
    write_text_atomic(Path(path), out.getvalue())


def read_history_csv(path: str | os.PathLike[str]) -> list[Row]:
    """Rows of a history.csv (empty cells dropped); [] if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]


class ScalarWriter:
    """Per-epoch TensorBoard scalars under ``log_dir/train`` and ``log_dir/validation``.

    Written as TensorBoard event files (TFRecord framing of ``Event`` protobufs holding
    ``simple_value`` scalars) by `trainer.events`, so no backend needs TensorFlow or the
    tensorboard package to write them. Tags are ``epoch_<metric>``, as Keras names them.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self._writers = {name: EventWriter(Path(log_dir) / name)
                         for name in ("train", "validation")}

    def write(self, row: Row) -> None:
        """Write one epoch's row; ``val_*`` keys go to validation/ as ``epoch_*``."""
        step = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch" or not math.isfinite(value):
                continue
            split, name = (("validation", key[4:]) if key.startswith("val_")
                           else ("train", key))
            self._writers[split].scalar(f"epoch_{name}", value, step)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def plot_curves(rows: Sequence[Row], path: str | os.PathLike[str]) -> None:
    """Masked loss and accuracy per epoch, train and validation, as a PNG (atomically).

    Falls back to Keras' ``loss`` where a row has no ``masked_loss``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metrics, title in ((axes[0], ("masked_loss", "loss"), "masked cross-entropy"),
                               (axes[1], ("masked_accuracy",), "masked accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            points = [(e, value) for e, row in zip(epochs, rows, strict=True)
                      if (value := _first(row, [prefix + m for m in metrics])) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    with atomic_output(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _first(row: Row, keys: Sequence[str]) -> float | None:
    return next((row[k] for k in keys if k in row), None)
