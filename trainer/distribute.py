"""Training on several devices or machines with ``tf.distribute`` (TensorFlow backend).

``mirrored``: ``tf.distribute.MirroredStrategy``, every GPU of one machine; each batch
is split across them. ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy``,
one process per machine, configured by ``TF_CONFIG``; worker r reads only its rank's
share of each global batch (`seqdata.read.config.BatchConfig.rank`), so every worker
steps once per global batch and the global step is the whole resume state: a run
stopped on W workers resumes on any number of them.

The loss is the mean over the *global* batch's real timesteps (`trainer.losses`), so W
workers train as one process would on the same global batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from trainer.errors import ConfigError, TrainerError

STRATEGIES = ("mirrored", "multi-worker")
# Seconds a worker waits in an all-reduce for the others: past it (or once the cluster's
# heartbeats show a worker gone) the run ends instead of hanging forever.
COLLECTIVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Placement:
    """Which share of each global batch this process trains.

    >>> Placement(1, 2).records, Placement().records
    (False, True)
    """

    rank: int = 0
    num_ranks: int = 1

    @property
    def records(self) -> bool:
        """The chief (rank 0) writes the run directory; the other workers only train."""
        return self.rank == 0


def read_tf_config(environ: Mapping[str, str] | None = None) -> Placement:
    """This worker's rank and the number of workers, from ``TF_CONFIG``, checked.

    Workers are ranked as ``MultiWorkerMirroredStrategy`` ranks them: a ``chief`` first
    (if the cluster names one), then ``worker`` 0, 1, ...

    >>> read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, '
    ...                 '"task": {"type": "worker", "index": 1}}'})
    Placement(rank=1, num_ranks=2)
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG")
    expected = ('expected JSON like {"cluster": {"worker": ["host:port", ...]}, "task": '
                '{"type": "worker", "index": i}}')
    if not text:
        raise ConfigError(f"strategy multi-worker needs the TF_CONFIG environment variable; "
                          f"{expected}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], task["index"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG cannot be read ({type(exc).__name__}: {exc}); "
                          f"{expected}") from exc
    sizes = {"chief": len(chiefs), "worker": len(workers)}
    if len(chiefs) > 1 or not chiefs + workers or not all(
            isinstance(a, str) and a for a in chiefs + workers):
        raise ConfigError(f"TF_CONFIG's cluster must list at most one chief and at least one "
                          f"worker address, got {cluster!r}")
    if kind not in sizes or not isinstance(index, int) or not 0 <= index < sizes[kind]:
        raise ConfigError(f"TF_CONFIG's task must be a chief or worker of the cluster, got "
                          f"{task!r} (the cluster has {sizes['chief']} chief and "
                          f"{sizes['worker']} workers)")
    rank = index if kind == "chief" else sizes["chief"] + index
    return Placement(rank, sizes["chief"] + sizes["worker"])


def make_strategy(name: str, timeout: float = COLLECTIVE_TIMEOUT) -> Any:
    """The ``tf.distribute`` strategy called ``name`` (see `STRATEGIES`).

    A multi-worker strategy must be made before TensorFlow runs anything: it sets up
    the cluster's collectives, and waits for every worker of ``TF_CONFIG`` to join.
    Its collectives give up after ``timeout`` seconds: without a timeout, the workers
    left when one dies wait for it forever.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    from seqdata.tf import import_tensorflow

    tf = import_tensorflow()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    read_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def placement_of(strategy: Any) -> Placement:
    """The placement of this process in ``strategy`` (None: one process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return Placement()
    spec = resolver.cluster_spec()
    chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
    workers = spec.num_tasks("worker") if "worker" in spec.jobs else 0
    rank = resolver.task_id if resolver.task_type == "chief" else chiefs + resolver.task_id
    return Placement(rank, chiefs + workers)


def per_worker(dataset: Any, strategy: Any, placement: Placement) -> Any:
    """The ``tf.data`` input of ``fit`` under ``strategy``.

    Under a multi-worker strategy the dataset is this worker's share, to be fed as it
    is: ``distribute_datasets_from_function`` does that, where Keras' own
    ``experimental_distribute_dataset`` would cut every batch again into one piece per
    worker and feed each worker only its piece of its share. Elsewhere the dataset is
    Keras' to distribute (a mirrored strategy splits each batch across the devices).
    """
    if placement.num_ranks == 1:
        return dataset
    if strategy.num_replicas_in_sync != placement.num_ranks:
        raise ConfigError(f"strategy multi-worker trains one device a worker, but these "
                          f"{placement.num_ranks} workers have "
                          f"{strategy.num_replicas_in_sync} devices; start one worker a "
                          f"device (e.g. with CUDA_VISIBLE_DEVICES)")
    return strategy.distribute_datasets_from_function(lambda _: dataset)


def scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op without a strategy: where models are made."""
    return nullcontext() if strategy is None else strategy.scope()


@contextmanager
def fitting(model: Any, strategy: Any) -> Iterator[None]:
    """Where ``model.fit`` / ``evaluate`` run under ``strategy``.

    Keras 3 (3.15) cannot fit our batches under ``tf.distribute`` as it stands
    (keras-team/keras#20585): before fitting it averages a first input batch over the
    replicas to build its metrics, which fails when the replicas' parts differ in rows
    (a batch split unevenly) and which ``MultiWorkerMirroredStrategy`` refuses
    outright; and under that strategy it averages each step's scalar metrics along an
    axis 0 they do not have. So here the metrics, loss and optimizer are built first,
    from a dummy batch in the strategy's scope; the model then forgets the strategy it
    was made under and fits inside that scope instead, which gives it the same
    strategy without the first step; and each step returns its metrics with one axis.
    The epoch's logs are read from the metrics themselves, summed over every replica,
    so they are global and the same on every worker.
    """
    if strategy is None:
        yield
        return
    import tensorflow as tf

    def one_axis(step: Any) -> Any:
        def wrapped(data: Any) -> dict[str, Any]:
            return {k: tf.reshape(v, (1,)) for k, v in step(data).items()}
        return wrapped

    steps = model.train_step, model.test_step
    with strategy.scope():
        # Built here, in the cross-replica context, not where the step is traced.
        x = tf.zeros((1, 1, model.input_shape[-1]))
        model._symbolic_build(data_batch=(x, tf.zeros((1, 1, 2)), tf.zeros((1, 1))))
    model._distribute_strategy = None
    model.train_step, model.test_step = one_axis(steps[0]), one_axis(steps[1])
    try:
        with strategy.scope():
            yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as exc:
        raise TrainerError(f"training stopped: a worker is gone or stopped answering "
                           f"({type(exc).__name__}: {_cause(exc.message)}); start every "
                           "worker again with --resume") from None
    finally:
        del model.train_step, model.test_step
        model._distribute_strategy = strategy


def _cause(message: str) -> str:
    """What a TensorFlow error says happened, without the Python frames it lists.

    >>> _cause("Graph execution error:\\n\\nDetected at node X defined at:\\n  File a\\n"
    ...        "Collective ops is aborted by: task 1 is gone\\n\\t [[{{node X}}]]")
    'Collective ops is aborted by: task 1 is gone'
    """
    skip = ("Graph execution error", "Detected at node", "File ", "[[")
    lines = [line.strip() for line in message.splitlines()]
    said = [line for line in lines if line and not line.startswith(skip)]
    return " ".join(said[:2])[:200] or " ".join(message.split())[:200]
