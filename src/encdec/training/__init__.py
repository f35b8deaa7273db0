"""What training needs beside the LightningModule: LR schedules, crash-safe checkpoints and
resuming, checkpoint averaging."""
