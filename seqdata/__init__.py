"""seqdata: variable-length sequence datasets as length-bucketed shards.

>>> import seqdata, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> batch = next(ds.batches("padded", batch_size=8))
>>> batch.x.shape[0], batch.x.shape[2], bool((batch.mask.sum(1) == batch.lengths).all())
(8, 5, True)
"""

from seqdata.batch import Batch
from seqdata.batching import BatchConfig
from seqdata.build import build_dataset
from seqdata.dataset import Dataset, open_dataset
from seqdata.errors import ManifestError, OutputError, SeqdataError, ShardError, SpecError
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec, LogNormalLengths, UniformLengths
from seqdata.verify import VerifyReport, verify_dataset

__all__ = [
    "Batch",
    "BatchConfig",
    "Dataset",
    "LagSumSpec",
    "LogNormalLengths",
    "ManifestError",
    "OutputError",
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
