"""The training loop as a library: per-epoch stats match the batches each epoch consumed,
and resuming is checked."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from seqdata.read.config import BatchConfig
from trainer.errors import ConfigError, RunDirError
from trainer.history import read_history_csv
from trainer.train import TrainConfig, train


def padding_of(batches) -> float:
    real = sum(b.num_timesteps for b in batches)
    return 1.0 - real / sum(b.mask.size for b in batches)


def run_quietly(run, config, dataset, **kwargs):
    return train(run, config, dataset, num_features=dataset.spec.num_features, verbose=0,
                 echo=lambda line: None, **kwargs)


def test_epoch_stats_count_exactly_the_batches_each_epoch_consumed(h5_dataset, tmp_path):
    options = BatchConfig(mode="padded", batch_size=40, seed=5)
    per_pass = h5_dataset.num_batches(replace(options, epoch=0))
    steps = per_pass + 2  # epochs straddle data epochs; tf.data prefetches ahead
    result = run_quietly(tmp_path / "run", TrainConfig(options, epochs=2,
                                                       steps_per_epoch=steps), h5_dataset)
    stream = list(itertools.chain.from_iterable(
        h5_dataset.batches(replace(options, epoch=e)) for e in range(3)))
    for row in result.history:
        first = (int(row["epoch"]) - 1) * steps
        assert row["padding_fraction"] == pytest.approx(padding_of(stream[first:first + steps]),
                                                        abs=1e-12)
    assert read_history_csv(tmp_path / "run" / "history.csv") == result.history


def test_resume_refuses_fewer_epochs_than_done(h5_dataset, tmp_path):
    config = TrainConfig(BatchConfig(batch_size=64), epochs=2, steps_per_epoch=2)
    run_quietly(tmp_path / "run", config, h5_dataset)
    with pytest.raises(RunDirError, match="has 2 already"):
        run_quietly(tmp_path / "run", TrainConfig(config.batching, epochs=1, steps_per_epoch=2),
                    h5_dataset, resume=True)
    again = run_quietly(tmp_path / "run", config, h5_dataset, resume=True)
    assert again.initial_epoch == 2 and len(again.history) == 2


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1, got 0"):
        TrainConfig(BatchConfig(), epochs=0)
    with pytest.raises(ConfigError, match="steps_per_epoch must be an integer >= 1, got -1"):
        TrainConfig(BatchConfig(), steps_per_epoch=-1)
    with pytest.raises(ConfigError, match="batching must be a BatchConfig"):
        TrainConfig({"batch_size": 32})
