"""Training: the one LightningModule, building it from a config or a checkpoint, LR schedules,
crash-safe checkpoints, checkpoint averaging."""
