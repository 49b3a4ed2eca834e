"""How a dataset is read: `Dataset`, the one batch planner, `Batch`, `BatchConfig` and
the numbered stream of epochs every bridge consumes. Knows nothing of any framework."""
