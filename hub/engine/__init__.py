"""The sync engine: runs, batching, checkpoints, dead letters."""
