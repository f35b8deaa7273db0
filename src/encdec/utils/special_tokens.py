"""The special tokens every vocabulary starts with, at fixed ids (tokenizers and networks agree
on them without importing each other)."""

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))
