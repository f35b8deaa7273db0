"""LightningModules: one per architecture family over the shared ``Seq2SeqModule`` base."""
