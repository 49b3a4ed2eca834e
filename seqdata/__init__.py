"""seqdata: variable-length sequence datasets as length-bucketed shards.

Layers, top-down (imports only go down): what the data is (`spec`, `generate`,
`buckets`, `sequences`), how it is stored (`seqdata.store`), how it is read
(`seqdata.read`), and how each framework gets it (the bridges `seqdata.tf`,
`seqdata.torch`, `seqdata.jax`, each importing its framework only when used).

>>> import seqdata, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> batch = next(ds.batches(seqdata.BatchConfig("padded", batch_size=8)))
>>> batch.x.shape[0], batch.x.shape[2], bool((batch.mask.sum(1) == batch.lengths).all())
(8, 5, True)
"""

from seqdata.errors import (
    ManifestError,
    OutputError,
    RemoteError,
    SeqdataError,
    ShardError,
    SpecError,
)
from seqdata.read.batch import Batch
from seqdata.read.config import BatchConfig
from seqdata.read.dataset import Dataset, open_dataset
from seqdata.read.stream import BatchStream
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec, LogNormalLengths, UniformLengths
from seqdata.store.build import build_dataset
from seqdata.store.verify import VerifyReport, verify_dataset

__all__ = [
    "Batch",
    "BatchConfig",
    "BatchStream",
    "Dataset",
    "LagSumSpec",
    "LogNormalLengths",
    "ManifestError",
    "OutputError",
    "RemoteError",
    "SeqdataError",
    "Sequences",
    "ShardError",
    "SpecError",
    "UniformLengths",
    "VerifyReport",
    "build_dataset",
    "open_dataset",
    "verify_dataset",
]
__version__ = "0.1.0"
