"""The ``trainer`` command: train, evaluate and predict.

Thin: parse, check the user's input, call one library function, report. Every user
mistake is one line on stderr and exit status 2; Keras and its backend (TensorFlow, JAX or
PyTorch: ``KERAS_BACKEND``) are loaded only after the arguments have been checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqdata.cli_common import (
    EXIT_OK,
    OneLineParser,
    bounded_int,
    finite_float,
    int_list,
    positive_float,
    run_command,
)
from seqdata.errors import SeqdataError
from seqdata.read.config import DEFAULT_BATCH_SIZE, DEFAULT_SHUFFLE_BLOCK
from trainer.defaults import (
    EVAL_BATCH_SIZE,
    MAX_INPUT_VALUES,
    MAX_LSTM_LAYERS,
    MAX_LSTM_UNITS,
    PRESETS,
)
from trainer.distribute import COLLECTIVE_TIMEOUT, STRATEGIES, Placement, read_tf_config
from trainer.errors import InputFileError, TrainerError
from trainer.schedule import SCHEDULES

RECIPE = PRESETS["default"]

PREDICT_HELP = f"""\
Writes per-timestep probabilities of class 1 (label 1: the lag sum exceeds the
threshold) as a float32 .npy file. The 2-way model output is normalized the way
categorical cross-entropy reads it: p1 = out[..., 1] / (out[..., 0] + out[..., 1]).

  --input X.npy of shape (L, F), one sequence   -> output shape (L,)
  --input X.npy of shape (B, L, F), B sequences -> output shape (B, L)
  --input a seqdata dataset directory           -> output shape (N, max length): row i is
        the sequence with the i-th smallest id; steps past its length are NaN.

Any length L >= 1 works, longer than seen in training included. A .npy file must hold
finite real numbers (int or float; no NaN, inf or complex values), at most
{MAX_INPUT_VALUES:,} of them, and exactly the bytes its header declares; it is checked
before anything is loaded, and never unpickled."""


def unit_fraction(text: str) -> float:
    """An argument type: a number in 0..1."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}")
    return value


def lstm_units(text: str) -> tuple[int, ...]:
    """An argument type: 1 to MAX_LSTM_LAYERS layer sizes, each 1 to MAX_LSTM_UNITS."""
    values = int_list(1)(text)
    if len(values) > MAX_LSTM_LAYERS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_LSTM_LAYERS} layer sizes, "
                                         f"got {len(values)}")
    if max(values) > MAX_LSTM_UNITS:
        raise argparse.ArgumentTypeError(f"expected layer sizes in 1..{MAX_LSTM_UNITS}, got "
                                         f"{text!r}")
    return values


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``trainer train``."""
    p.add_argument("--data", required=True, metavar="DIR",
                   help="seqdata dataset directory (or fsspec URL) to train on")
    p.add_argument("--out", type=Path, required=True, metavar="RUN",
                   help="run directory (must be empty unless --resume or --overwrite)")
    p.add_argument("--validation-data", metavar="DIR",
                   help="held-out seqdata dataset, evaluated after every epoch")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="default: the default recipe (what no option gives; see "
                        "docs/RESULTS.md); seed: the seed answer's run (bucketed batches of "
                        "exactly 1000 sequences of one length, the rest of each length "
                        "dropped, 30 steps an epoch, 10 epochs, Adam at a constant 0.001); "
                        "options given explicitly override it")
    p.add_argument("--mode", choices=("bucketed", "padded"),
                   help="bucketed: each batch from one length bucket (default); padded: "
                        "lengths mixed, padded to the batch's longest")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=bounded_int(1), metavar="N",
                      help=f"sequences per batch (the seed preset's: {DEFAULT_BATCH_SIZE})")
    size.add_argument("--max-timesteps", type=bounded_int(1), metavar="T",
                      help=f"instead of --batch-size: at most T padded timesteps a batch "
                           f"(default {RECIPE['max_timesteps']})")
    flag = argparse.BooleanOptionalAction
    p.add_argument("--same-length", action=flag,
                   help="bucketed: every batch holds sequences of one length")
    p.add_argument("--pad-to-bucket", action=flag,
                   help="bucketed: pad batches to their bucket's upper bound")
    p.add_argument("--drop-remainder", action=flag,
                   help="drop the short last batch of each group (of each length with "
                        "--same-length)")
    p.add_argument("--shuffle-block", type=bounded_int(1), metavar="K",
                   help=f"shuffle blocks of K stored neighbours together (default "
                        f"{DEFAULT_SHUFFLE_BLOCK}: batches are then copied as whole runs); 1 "
                        f"shuffles every sequence on its own")
    p.add_argument("--epochs", type=bounded_int(1), metavar="N",
                   help=f"total epochs (default {RECIPE['epochs']})")
    p.add_argument("--steps-per-epoch", type=bounded_int(1), metavar="N",
                   help="batches per epoch (default: one pass over the data); more than one "
                        "pass continues into the next epoch's batches")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), metavar="S",
                   help="seed of batch order and initial weights (default 0)")
    p.add_argument("--learning-rate", type=positive_float, metavar="LR",
                   help=f"Adam's (peak) learning rate (default {RECIPE['learning_rate']})")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help=f"learning-rate schedule (default {RECIPE['schedule']}): constant, or "
                        "cosine (linear warm-up over "
                        "--warmup-steps, then a cosine decay to --final-fraction of the "
                        "learning rate at the last step)")
    p.add_argument("--warmup-steps", type=bounded_int(0), metavar="N",
                   help=f"cosine: steps of linear warm-up from 0 (default "
                        f"{RECIPE['warmup_steps']})")
    p.add_argument("--final-fraction", type=unit_fraction, metavar="F",
                   help=f"cosine: the last step's learning rate as a fraction of the peak "
                        f"(default {RECIPE['final_fraction']})")
    p.add_argument("--stop-at-accuracy", type=unit_fraction, metavar="A",
                   help="with --validation-data: stop after the first epoch whose validation "
                        "masked accuracy reaches A (e.g. 0.995)")
    p.add_argument("--lstm-units", type=lstm_units, metavar="U1,U2,...",
                   help=f"sizes of the stacked LSTM layers (default 32,8; at most "
                        f"{MAX_LSTM_LAYERS} layers of at most {MAX_LSTM_UNITS} units)")
    p.add_argument("--output-activation", choices=("sigmoid", "softmax"),
                   help="activation of the final Dense(2) (default sigmoid)")
    p.add_argument("--checkpoint-every", type=bounded_int(1), metavar="N",
                   help="also checkpoint every N steps, so that --resume continues from the "
                        "exact step of a killed run (default: at epoch ends only)")
    p.add_argument("--log-batches", action="store_true",
                   help="append the sequence ids of every trained step to RUN/batches.jsonl")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue RUN from its latest checkpoint, mid-epoch included "
                            "(same options; --epochs and --checkpoint-every may change; the "
                            "learning-rate schedule stays the checkpoint's)")
    again.add_argument("--overwrite", action="store_true",
                       help="delete RUN's previous run artifacts first")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bar")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="train under tf.distribute (TensorFlow backend): mirrored, every GPU "
                        "of this machine, each batch split across them; multi-worker, one "
                        "process per machine as TF_CONFIG describes, each training its share "
                        "of every global batch (RUN must be a directory every worker sees; "
                        "the chief writes it; --resume works on any number of workers)")
    p.add_argument("--collective-timeout", type=positive_float, metavar="S",
                   default=COLLECTIVE_TIMEOUT,
                   help=f"multi-worker: end the run when a worker waits more than S seconds "
                        f"for the others in a step (default {COLLECTIVE_TIMEOUT:.0f}); a worker "
                        f"that dies ends it at once")


def _option(args: argparse.Namespace, name: str, default: Any) -> Any:
    """An option's value: given explicitly, else the preset's, else the default."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    return PRESETS[args.preset or "default"].get(name, default)


def train_config(args: argparse.Namespace) -> Any:
    """The `TrainConfig` the arguments ask for."""
    from seqdata.read.config import BatchConfig
    from trainer.model import ModelConfig
    from trainer.schedule import ScheduleConfig
    from trainer.train import TrainConfig

    batch_size, max_timesteps = args.batch_size, args.max_timesteps
    if max_timesteps is None and batch_size is None:  # neither given: the preset's
        batch_size = _option(args, "batch_size", None)
        if batch_size is None:
            max_timesteps = _option(args, "max_timesteps", None)
    batching, model, schedule = BatchConfig(), ModelConfig(), ScheduleConfig()  # defaults
    name = _option(args, "schedule", schedule.name)
    # A constant schedule given explicitly takes no warm-up or decay from the preset.
    warmup, final = ((args.warmup_steps or 0, args.final_fraction or 0.0) if name == "constant"
                     else (_option(args, "warmup_steps", schedule.warmup_steps),
                           _option(args, "final_fraction", schedule.final_fraction)))
    return TrainConfig(
        batching=BatchConfig(
            mode=_option(args, "mode", batching.mode), batch_size=batch_size,
            max_timesteps=max_timesteps, seed=_option(args, "seed", batching.seed),
            pad_to_bucket=_option(args, "pad_to_bucket", batching.pad_to_bucket),
            drop_remainder=_option(args, "drop_remainder", batching.drop_remainder),
            same_length=_option(args, "same_length", batching.same_length),
            shuffle_block=_option(args, "shuffle_block", batching.shuffle_block)),
        epochs=_option(args, "epochs", 1),
        steps_per_epoch=_option(args, "steps_per_epoch", None),
        checkpoint_every=args.checkpoint_every, log_batches=args.log_batches,
        schedule=ScheduleConfig(name, warmup, final),
        stop_at_accuracy=args.stop_at_accuracy,
        model=ModelConfig(
            lstm_units=_option(args, "lstm_units", model.lstm_units),
            output_activation=_option(args, "output_activation", model.output_activation),
            learning_rate=_option(args, "learning_rate", model.learning_rate)))


def location(text: str) -> str:
    """How a run records a dataset: an absolute path, or the URL as given."""
    from seqdata.store.remote import is_url

    return text if is_url(text) else str(Path(text).resolve())


def open_data(option: str, path: str | Path) -> Any:
    """Open a seqdata dataset (a directory or an fsspec URL), naming the option in any
    error."""
    from seqdata import open_dataset

    try:
        return open_dataset(path)
    except SeqdataError as exc:
        raise TrainerError(f"{option}: {exc}") from exc


def run_train(args: argparse.Namespace) -> int:
    from trainer.backend import configured_backend
    from trainer.run_dir import RunDir, describe_data

    if args.strategy and configured_backend() != "tensorflow":
        raise TrainerError(f"--strategy {args.strategy} needs the tensorflow backend, not "
                           f"{configured_backend()} (set KERAS_BACKEND=tensorflow)")
    placement = read_tf_config() if args.strategy == "multi-worker" else Placement()
    if placement.records:  # the other workers write nothing there (the chief may have)
        RunDir(args.out).check(resume=args.resume, overwrite=args.overwrite)
    data = open_data("--data", args.data)
    validation = (open_data("--validation-data", args.validation_data)
                  if args.validation_data is not None else None)
    features = data.spec.num_features
    if validation is not None and validation.spec.num_features != features:
        raise TrainerError(f"--validation-data has {validation.spec.num_features} features a "
                           f"timestep, expected {features} like --data")
    paths = {"train": location(args.data),
             "validation": None if validation is None else location(args.validation_data)}
    if args.resume:  # before TensorFlow loads; `train` checks it again for library callers
        RunDir(args.out).check_same_data(
            describe_data(paths, data, validation),
            {"train": f"--data {args.data}", "validation": f"--validation-data "
                                                            f"{args.validation_data}"})
    from trainer.backend import load_keras

    load_keras()
    from trainer.distribute import make_strategy
    from trainer.train import train

    config = train_config(args)
    strategy = make_strategy(args.strategy, args.collective_timeout) if args.strategy else None
    result = train(args.out, config, data, num_features=features, validation=validation,
                   data=paths, resume=args.resume, overwrite=args.overwrite,
                   verbose=0 if args.quiet else ("auto" if sys.stdout.isatty() else 2),
                   strategy=strategy)
    if args.strategy:
        from trainer.model import weights_digest

        print(f"worker {placement.rank} of {placement.num_ranks}: trained steps "
              f"{result.initial_step + 1}..{result.final_step}, final weights sha256 "
              f"{weights_digest(result.model)}")
        if not placement.records:
            return EXIT_OK
    run = result.run
    print(f"model: {run.model}\nhistory: {run.history} and {run.metrics}\n"
          f"curves: {run.curves}\ncheckpoints: {run.checkpoints}\n"
          f"logs: {run.logs} (tensorboard --logdir {run.logs})")
    return EXIT_OK


def load_model_quietly(path: Path) -> Any:
    """Import Keras (TensorFlow quietly, on its backend), then load a model file safely."""
    from trainer.backend import load_keras

    load_keras()
    from trainer.model import load_model

    return load_model(path, compile=False)


def check_features(model: Any, option: str, features: int) -> None:
    from trainer.model import num_features_of

    expected = num_features_of(model)
    if features != expected:
        raise TrainerError(f"{option} has {features} features a timestep, but the model "
                           f"expects {expected}")


def run_evaluate(args: argparse.Namespace) -> int:
    data = open_data("--data", args.data)
    model = load_model_quietly(args.model)
    check_features(model, "--data", data.spec.num_features)
    from seqdata.read.config import BatchConfig
    from trainer.inference import evaluate
    from trainer.model import out_of_memory_is_an_error

    with out_of_memory_is_an_error("evaluating"):
        result = evaluate(model, data, BatchConfig("bucketed", batch_size=args.batch_size,
                                                   shuffle=False))
    if args.json:
        print(json.dumps({**result, "model": str(args.model), "data": str(args.data)}))
        return EXIT_OK
    print(f"masked loss {result['loss']:.4f}, masked accuracy "
          f"{result['masked_accuracy']:.4f} over {result['num_sequences']:,} sequences "
          f"({result['num_timesteps']:,} real timesteps) of {args.data}")
    print("by length:  lengths   sequences  masked loss  masked accuracy")
    for row in result["buckets"]:
        print(f"{row['min_length']:>11}..{row['max_length']:<6} {row['num_sequences']:>10,} "
              f"{row['loss']:>12.4f} {row['masked_accuracy']:>16.4f}")
    return EXIT_OK


def load_npy_input(path: Path) -> np.ndarray:
    """A checked (L, F) or (B, L, F) array of finite real numbers, mapped from a .npy file
    (`trainer.inputs.load_npy`)."""
    from trainer.inputs import load_npy

    return load_npy(path, f"--input {path}")


def run_predict(args: argparse.Namespace) -> int:
    if args.output.suffix != ".npy":
        raise InputFileError(f"--output {args.output} must end with .npy")
    if args.output.exists() and not args.overwrite:
        raise InputFileError(f"--output {args.output} exists; pass --overwrite to replace it")
    if args.input.is_dir():
        source, x = open_data("--input", args.input), None
    elif args.input.is_file():
        source, x = None, load_npy_input(args.input)
    else:
        raise InputFileError(f"--input {args.input} does not exist (expected a .npy file or "
                             "a seqdata dataset directory)")
    model = load_model_quietly(args.model)
    check_features(model, "--input",
                   source.spec.num_features if source is not None else x.shape[-1])
    from seqdata.store.atomic import atomic_output
    from trainer.inference import predict_array, predict_dataset
    from trainer.model import out_of_memory_is_an_error

    with out_of_memory_is_an_error("predicting"):
        probs = (predict_dataset(model, source, args.batch_size) if source is not None
                 else predict_array(model, x, args.batch_size))
    with atomic_output(args.output) as tmp, open(tmp, "wb") as handle:
        np.save(handle, probs, allow_pickle=False)
    print(f"wrote probabilities of class 1, {probs.dtype} {probs.shape}, to {args.output}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="trainer",
                           description="Train, evaluate and use the stacked-LSTM model on "
                                       "seqdata datasets.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model into a run directory",
                                description="Train a model; writes RUN/model.keras, "
                                            "history.csv, metrics.json, curves.png, logs/, "
                                            "checkpoints/.")
    add_train_arguments(train)
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("evaluate", help="masked loss and accuracy on a dataset",
                                   description="Print the masked (real timesteps only) loss "
                                               "and accuracy of a model on a dataset.")
    evaluate.add_argument("--model", type=Path, required=True, metavar="FILE",
                          help="a .keras model file")
    evaluate.add_argument("--data", required=True, metavar="DIR",
                          help="seqdata dataset directory (or fsspec URL)")
    evaluate.add_argument("--batch-size", type=bounded_int(1), default=EVAL_BATCH_SIZE,
                          metavar="N")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_evaluate)

    predict = commands.add_parser("predict", help="per-timestep probabilities of class 1",
                                  description=PREDICT_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--model", type=Path, required=True, metavar="FILE",
                         help="a .keras model file")
    predict.add_argument("--input", type=Path, required=True, metavar="FILE",
                         help=".npy (L, F) or (B, L, F), or a seqdata dataset directory")
    predict.add_argument("--output", type=Path, required=True, metavar="FILE",
                         help=".npy file to write (see above)")
    predict.add_argument("--batch-size", type=bounded_int(1), default=EVAL_BATCH_SIZE,
                         metavar="N")
    predict.add_argument("--overwrite", action="store_true", help="replace --output")
    predict.set_defaults(run=run_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trainer`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    hint = "; continue with --resume" if args.command == "train" else ""
    return run_command(args, f"trainer {args.command}", parser, (TrainerError, SeqdataError),
                       hint)
