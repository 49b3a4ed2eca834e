"""How a dataset is stored: shard formats, the manifest, the dataset card, building and
converting, the build journal, reading one shard, verifying, and atomic writes. Knows
nothing of batches."""
