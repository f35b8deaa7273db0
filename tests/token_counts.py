"""A callback for the throughput tests: each rank writes how many real target tokens it trained
on to ``target_tokens_rank{R}.json`` in the run dir (``+callbacks.count._target_=
tests.token_counts.CountTargetTokens``)."""

import json
from pathlib import Path

import lightning as L

from encdec.data.tokenization import PAD_ID


class CountTargetTokens(L.Callback):
    def __init__(self) -> None:
        self.target_tokens = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.target_tokens += int((batch["target_out"] != PAD_ID).sum())

    def on_train_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / f"target_tokens_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.target_tokens))
