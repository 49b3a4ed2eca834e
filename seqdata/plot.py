"""The length histogram with bucket boundaries and each bucket's padding, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqdata.buckets import bucket_lower_bounds
from seqdata.errors import SeqdataError
from seqdata.store.atomic import atomic_output
from seqdata.store.manifest import Manifest, padding_fraction


def plot_buckets(manifest: Manifest, path: Path) -> None:
    """Draw the length histogram, the boundaries and the padding per bucket to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SeqdataError("plotting needs matplotlib: pip install 'seqdata[plot]'") from None
    if path.suffix.lower() != ".png":
        raise SeqdataError(f"plot={path} must name a .png file")
    low = manifest.spec.lengths.low
    counts = np.asarray(manifest.length_counts)
    lengths = np.arange(low, low + len(counts))
    pad = padding_fraction(manifest.bucket_sequences, manifest.bucket_timesteps,
                           manifest.boundaries)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(lengths, counts, width=1.0, color="#4c72b0", label="sequences of each length")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("sequences")
    top = counts.max() if counts.size else 1
    lows = bucket_lower_bounds(manifest.boundaries, low)
    for b, (lo, hi) in enumerate(zip(lows, manifest.boundaries, strict=True)):
        ax.axvline(hi + 0.5, color="#c44e52", linewidth=0.8)
        if not np.isnan(pad[b]):
            ax.text((lo + hi) / 2, top * 1.02, f"{pad[b]:.0%}", ha="center", va="bottom",
                    fontsize=7, rotation=90, color="#c44e52")
    total = 1 - manifest.num_timesteps / float(np.dot(manifest.bucket_sequences,
                                                       manifest.boundaries))
    ax.set_ylim(0, top * 1.25)
    ax.set_title(f"{len(manifest.boundaries)} buckets (red lines; padding per bucket above), "
                 f"{total:.2%} padding if padded to bucket bounds")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
