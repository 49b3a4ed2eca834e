"""How a dataset is stored: shard formats, the manifest, building, the build journal,
reading one shard, verifying, and atomic writes. Knows nothing of batches."""
