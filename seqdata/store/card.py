"""The dataset card: ``DIR/README.md``, written from the manifest just before it.

What the data is (spec, seed, leak mode), its counts, length histogram and bucket table,
the files, and how to load it (pandas, pyarrow, polars, DuckDB, Hugging Face ``datasets``,
h5py, seqdata, PyTorch, JAX, Keras). Its YAML front matter follows the Hugging Face Hub's
dataset cards: for Parquet, a ``configs`` entry makes ``datasets.load_dataset(DIR)`` read
``data/*.parquet`` as one ``train`` split; HDF5 shards are not rows (flat arrays split by
offsets), so their card has no ``configs`` and turns the Hub's viewer off.

The card is a function of the manifest alone (no time, no path): a build, a ``--resume``
finish and a conversion of the same dataset write the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqdata.store.atomic import read_regular_text, write_bytes_atomic
from seqdata.store.manifest import DATA_DIR, Manifest, padding_fraction

CARD_NAME = "README.md"
# The card's first line after its front matter: what tells a card seqdata wrote (and may
# replace) from a README.md of someone else's.
CARD_MARK = "<!-- seqdata dataset card: written from manifest.json by seqdata -->"
MAX_CARD_BYTES = 1 << 20  # a card is a few KB; only one this size is read back to compare
FORMAT_TITLES = {"hdf5": "HDF5", "parquet": "Parquet"}
# The Hugging Face Hub's size categories: (upper bound, label), the last one open.
SIZE_CATEGORIES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"),
                   (10**6, "100K<n<1M"), (10**7, "1M<n<10M"), (10**8, "10M<n<100M"),
                   (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"),
                   (10**12, "100B<n<1T")]


def histogram_lines(min_length: int, counts: Sequence[int], rows: int = 16,
                    width: int = 40) -> list[str]:
    """A text bar chart of a length histogram, in at most ``rows`` bins."""
    counts = np.asarray(counts)
    nz = np.flatnonzero(counts)
    if not len(nz):
        return []
    counts = counts[: nz[-1] + 1]
    step = -(-len(counts) // rows)
    binned = np.add.reduceat(counts, np.arange(0, len(counts), step))
    top = binned.max()
    lines = []
    for i, c in enumerate(binned):
        lo = min_length + i * step
        hi = min(lo + step - 1, min_length + len(counts) - 1)
        label = f"{lo}..{hi}" if hi > lo else f"{lo}"
        lines.append(f"  {label:>11} {'#' * round(width * c / top):<{width}} {c:,}")
    return lines


def size_category(n: int) -> str:
    """The Hugging Face Hub's ``size_categories`` label for ``n`` rows."""
    return next((label for bound, label in SIZE_CATEGORIES if n < bound), "n>1T")


def lengths_text(manifest: Manifest) -> str:
    lengths = manifest.spec.lengths
    if lengths.kind == "uniform":
        return f"uniform over {lengths.low}..{lengths.high}"
    return (f"log-normal, median {lengths.median:g}, sigma {lengths.sigma:g}, clipped to "
            f"{lengths.low}..{lengths.high}")


def _front_matter(m: Manifest) -> list[str]:
    lines = ["---",
             f"pretty_name: seqdata lag-sum sequences ({m.num_sequences:,} sequences, "
             f"seed {m.spec.seed})",
             "tags:", "- seqdata", "- synthetic", "- sequence-labeling",
             "size_categories:", f"- {size_category(m.num_sequences)}"]
    if m.format == "parquet":
        lines += ["configs:", "- config_name: default", "  data_files:", "  - split: train",
                  f"    path: {DATA_DIR}/*.parquet"]
    else:
        lines += ["viewer: false"]
    return [*lines, "---"]


def snippets(m: Manifest) -> dict[str, str]:
    """The card's code snippets by name, in the order they appear; ``DIR`` stands for the
    dataset directory's path (the tests run them with it replaced)."""
    first = f"DIR/{m.shards[0].path}"
    f = m.spec.num_features
    out: dict[str, str] = {}
    if m.format == "parquet":
        out["pandas"] = (
            "import numpy as np\nimport pandas as pd\n\n"
            f'df = pd.read_parquet("DIR/{DATA_DIR}")  # a row per sequence: id, length, '
            "bucket, x, y\n"
            f"x0 = np.stack(df.x[0])  # (length, {f}) float32\n"
            "y0 = df.y[0]  # (length,) uint8")
        out["pyarrow"] = (
            "import pyarrow.dataset as pads\nimport pyarrow.parquet as pq\n\n"
            f'table = pq.read_table("DIR/{DATA_DIR}")\n'
            f'long = pads.dataset("DIR/{DATA_DIR}").to_table(filter=pads.field("length") > 50)')
        out["polars"] = (
            "import polars as pl\n\n"
            f'df = pl.read_parquet("DIR/{DATA_DIR}")  # x: list[array[f32, {f}]], y: list[u8]')
        out["duckdb"] = (
            "import duckdb\n\n"
            f"files = \"'DIR/{DATA_DIR}/*.parquet'\"\n"
            "per_length = duckdb.sql(f\"SELECT length, count(*) FROM {files} \"\n"
            "                        \"GROUP BY length ORDER BY length\").fetchall()\n"
            "labels = duckdb.sql(f\"SELECT unnest(y) FROM {files} WHERE id = 0\").fetchnumpy()")
        out["datasets"] = (
            "from datasets import load_dataset\n\n"
            'rows = load_dataset("DIR", split="train")  # the configs above: '
            f"{DATA_DIR}/*.parquet")
    else:
        out["h5py"] = (
            "import h5py\n\n"
            f'with h5py.File("{first}") as f:\n'
            "    for name in f:  # bucket_0000, ...: one group per non-empty bucket\n"
            "        g = f[name]\n"
            '        off = g["offsets"][()]  # sequence j is rows off[j]:off[j+1]\n'
            f'        x0 = g["x"][off[0]:off[1]]  # (length, {f}) float32\n'
            '        y0 = g["y"][off[0]:off[1]]  # (length,) uint8\n'
            '        ids = g["ids"][()]')
    out["seqdata"] = (
        "import seqdata\n\n"
        'ds = seqdata.open_dataset("DIR")  # checks the manifest, then each shard\'s SHA-256\n'
        'for batch in ds.batches("bucketed", batch_size=64, seed=0):\n'
        "    batch.x, batch.y, batch.mask, batch.lengths, batch.ids  # numpy, padded per batch")
    out["torch"] = (
        "from torch.utils.data import DataLoader\n\nimport seqdata.torch\n\n"
        'data = seqdata.torch.BatchDataset("DIR", "bucketed", batch_size=64, seed=0)\n'
        "for batch in DataLoader(data, batch_size=None, num_workers=2):\n"
        '    batch["x"], batch["y"], batch["mask"], batch["lengths"], batch["ids"]  # tensors')
    if m.format == "parquet":
        out["torch-rows"] = (
            "from datasets import load_dataset\nfrom torch.utils.data import DataLoader\n\n"
            "import seqdata.torch\n\n"
            'rows = load_dataset("DIR", split="train")\n'
            "loader = DataLoader(rows, batch_size=64, shuffle=True, "
            "collate_fn=seqdata.torch.pad_collate)\n"
            "for batch in loader:  # rows padded to the batch's longest, with a mask\n"
            '    batch["x"], batch["y"], batch["mask"], batch["lengths"], batch["ids"]')
        out["torch-plain"] = (
            "import numpy as np\nimport pandas as pd\nimport torch\n"
            "from torch.nn.utils.rnn import pad_sequence\n\n"
            f'df = pd.read_parquet("DIR/{DATA_DIR}").head(64)\n'
            "xs = [torch.from_numpy(np.stack(v)) for v in df.x]\n"
            f"x = pad_sequence(xs, batch_first=True)  # (B, longest, {f}), zeros after\n"
            "mask = torch.arange(x.shape[1]) < torch.tensor(df.length.to_numpy())[:, None]")
    else:
        out["torch-plain"] = (
            "import h5py\nimport numpy as np\nimport torch\n"
            "from torch.nn.utils.rnn import pad_sequence\n\n"
            f'with h5py.File("{first}") as f:\n'
            "    g = f[sorted(f)[-1]]  # the shard's last bucket\n"
            '    off, x = g["offsets"][()], torch.from_numpy(g["x"][()])\n'
            "seqs = torch.tensor_split(x, torch.from_numpy(off[1:-1]))\n"
            f"batch = pad_sequence(seqs, batch_first=True)  # (n, longest, {f}), zeros after\n"
            "mask = torch.arange(batch.shape[1]) < torch.from_numpy(np.diff(off))[:, None]")
    out["jax"] = (
        "import seqdata.jax\n\n"
        "# one shape per bucket (short batches filled with masked rows, id -1): a jitted\n"
        "# step compiles at most once per bucket\n"
        'for arrays in seqdata.jax.batches("DIR", "bucketed", batch_size=64, seed=0):\n'
        '    arrays["x"], arrays["y"], arrays["mask"]  # jax.Array')
    out["keras"] = (
        "import keras\n\nimport seqdata.tf\n\n"
        "# (x, one-hot y, per-step weights 0 on padding), time axis None\n"
        'data = seqdata.tf.dataset("DIR", "bucketed", batch_size=64, seed=0)\n'
        f"model = keras.Sequential([keras.Input((None, {f})), "
        "keras.layers.LSTM(16, return_sequences=True),\n"
        '                          keras.layers.Dense(2, activation="softmax")])\n'
        'model.compile("adam", "categorical_crossentropy", weighted_metrics=["accuracy"])\n'
        "model.fit(data, epochs=1, verbose=0)\n"
        "# or the trainer's command line: trainer train --data DIR --out RUN")
    return out


SNIPPET_TITLES = {
    "pandas": "pandas", "pyarrow": "pyarrow", "polars": "polars",
    "duckdb": "DuckDB", "datasets": "Hugging Face `datasets`", "h5py": "h5py",
    "seqdata": "seqdata (numpy batches)",
    "torch": "PyTorch: `seqdata.torch.BatchDataset`",
    "torch-rows": "PyTorch over Hugging Face rows: `seqdata.torch.pad_collate`",
    "torch-plain": "PyTorch without seqdata",
    "jax": "JAX: `seqdata.jax`",
    "keras": "Keras / TensorFlow: `seqdata.tf` (or `trainer`)",
}


def card_text(m: Manifest) -> str:
    """The card of the dataset that ``m`` describes (Markdown with YAML front matter)."""
    spec = m.spec
    fmt = FORMAT_TITLES[m.format]
    size = sum(s.size for s in m.shards)
    seqs, steps = m.bucket_sequences, m.bucket_timesteps
    pad = padding_fraction(seqs, steps, m.boundaries)
    total_pad = 1.0 - m.num_timesteps / float(np.dot(seqs, m.boundaries))
    terms = " + ".join(f"x[t-{i},{i}]" if i else "x[t,0]" for i in range(spec.window))
    out = [*_front_matter(m), CARD_MARK, "",
           f"# Lag-sum sequences: {m.num_sequences:,} sequences, seed {spec.seed}", "",
           f"Synthetic variable-length sequences for sequence labelling, made by `seqdata "
           f"generate` and stored as {len(m.shards)} length-bucketed {fmt} shards. This card "
           f"is written from `manifest.json` (checksum `{m.checksum[:16]}`), which lists "
           f"every shard with its counts and SHA-256: `seqdata verify DIR` checks them all.",
           ""]
    if m.leaky:
        out += ["**LEAKY dataset** (`seed_compat_leak`): feature 0 holds the lag sum itself, "
                "so the input gives the label away. It exists only to reproduce the seed "
                "answer's curve; do not train real models on it.", ""]
    out += ["## What the data is", "",
            f"Sequence `i` (ids `0..{m.num_sequences - 1}`) has a length `L`, values `x` "
            f"float32 `(L, {spec.num_features})` drawn uniformly from [0, 1), and labels `y` "
            f"uint8 `(L,)`: `y[t] = 1` if `{terms} > {spec.threshold:g}` (terms before the "
            f"start absent, summed in float32 in that order), else 0.", "",
            "| spec | value |", "|---|---|",
            f"| features | {spec.num_features} |",
            f"| window | {spec.window} |",
            f"| threshold | {spec.threshold:g} |",
            f"| lengths | {lengths_text(m)} |",
            f"| sequences | {spec.num_sequences:,} |",
            f"| seed | {spec.seed} |",
            f"| chunk size | {spec.chunk_size:,} (ids per shard) |",
            "| leak mode | " + ("**on**: feature 0 holds the lag sum" if m.leaky
                               else "off (`seed_compat_leak` false)") + " |", "",
            "## Counts", "",
            "| | |", "|---|---|",
            f"| sequences | {m.num_sequences:,} |",
            f"| timesteps | {m.num_timesteps:,} (mean length "
            f"{m.num_timesteps / m.num_sequences:.1f}) |",
            f"| shards | {len(m.shards):,} {fmt} files in `{DATA_DIR}/` |",
            f"| bytes | {size:,} |",
            f"| buckets | {len(m.boundaries)}; {total_pad:.2%} padding if each sequence is "
            f"padded to its bucket's upper bound |", "",
            f"## Length histogram ({spec.lengths.low}..{spec.lengths.high})", "",
            "```text", *histogram_lines(spec.lengths.low, m.length_counts), "```", "",
            "## Buckets", "",
            "Within each shard, sequences are grouped by bucket (one "
            + ("row group" if m.format == "parquet" else "HDF5 group `bucket_NNNN`")
            + " per non-empty bucket) and sorted by length, ties by id.", "",
            "| bucket | lengths | sequences | timesteps | padding |", "|---|---|---|---|---|"]
    lows = [spec.lengths.low, *(b + 1 for b in m.boundaries[:-1])]
    for b, (lo, hi) in enumerate(zip(lows, m.boundaries, strict=True)):
        frac = "-" if np.isnan(pad[b]) else f"{pad[b]:.1%}"
        out.append(f"| {b} | {lo}..{hi} | {seqs[b]:,} | {steps[b]:,} | {frac} |")
    last = m.shards[-1].path
    out += ["", "## Files", "", "```text",
            f"{CARD_NAME:<26}this card",
            f"{'manifest.json':<26}spec, buckets, each shard's counts, size and SHA-256 "
            "(written last)",
            f"{m.shards[0].path:<26}one shard per {spec.chunk_size:,} ids, in id order"]
    if len(m.shards) > 1:
        out.append(f"{'...':<26}" + ("" if len(m.shards) == 2 else
                                      f"({len(m.shards) - 2:,} more)"))
        out.append(last)
    out += ["```", ""]
    if m.format == "parquet":
        out += [f"Each row is one sequence: `id` int64, `length` int32, `bucket` int32, `x` "
                f"list<fixed_size_list<float32, {spec.num_features}>> (`length` steps), `y` "
                "list<uint8>; no column is null, no page compressed.", ""]
    else:
        out += ["Each bucket's group holds `x` float32 `(T, F)`, `y` uint8 `(T,)` (all its "
                "timesteps, flat), `offsets` int64 `(n+1,)` and `ids` int64 `(n,)`: "
                "sequence `j` is rows `offsets[j]:offsets[j+1]`. Hugging Face `datasets`, "
                "pandas and DuckDB read Parquet: `seqdata convert DIR OUT --format parquet` "
                "writes the same sequences as Parquet shards.", ""]
    out += ["## Load it", "",
            "Below, `DIR` is this directory's path. Every file in "
            f"`DIR/{DATA_DIR}` is a shard, so directory-level readers take "
            f"`DIR/{DATA_DIR}` as one table.", ""]
    for name, code in snippets(m).items():
        out += [f"### {SNIPPET_TITLES[name]}", "", "```python", code, "```", ""]
    return "\n".join(out)


def write_card(out: Path, manifest: Manifest) -> None:
    """Write ``DIR/README.md`` atomically (and durably: the manifest comes next)."""
    write_bytes_atomic(out / CARD_NAME, card_text(manifest).encode())


def is_card(path: Path) -> bool:
    """Whether ``path`` is a regular file holding a card seqdata wrote."""
    try:
        return CARD_MARK in read_regular_text(path, MAX_CARD_BYTES)
    except (OSError, UnicodeDecodeError):
        return False


def card_is_current(root: Path, manifest: Manifest) -> bool:
    """Whether ``DIR/README.md`` is a regular file holding exactly ``manifest``'s card."""
    try:
        return read_regular_text(root / CARD_NAME, MAX_CARD_BYTES) == card_text(manifest)
    except (OSError, UnicodeDecodeError):
        return False
