"""Tiny pretrained models saved with their own tokenizers, laid out as the real ones on the hub
are (``save_pretrained`` of the model and of a fast tokenizer): T5's special tokens (pad 0,
eos 1, unk 2, a Unigram vocabulary, the decoder starting from pad), BART's (bos 0, pad 1, eos
2, unk 3, the decoder starting from eos) and GPT-2's (one ``<|endoftext|>`` at the end, no pad
or unk). Their words cover SCAN, the default data."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

WORDS = (
    "jump walk run look turn left right around opposite twice thrice and after "
    "I_JUMP I_WALK I_RUN I_LOOK I_TURN_LEFT I_TURN_RIGHT"
).split()
T5_SPECIALS = ["<pad>", "</s>", "<unk>"]
BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
END_OF_TEXT = "<|endoftext|>"
SIZES = {"d_model": 32, "num_heads": 2}


def t5_tokenizer() -> Tokenizer:
    pieces = [(token, 0.0) for token in T5_SPECIALS]
    pieces += [(f"▁{word}", -1.0 - 0.01 * i) for i, word in enumerate(WORDS)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens([*T5_SPECIALS, "<extra_id_0>"])  # one past the pieces
    return tokenizer


def word_tokenizer(vocabulary: list[str], unknown: str) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary)}, unknown))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces
    return tokenizer


def save_pretrained(family: str, directory: Path) -> Path:
    """A tiny ``family`` model (t5, bart or gpt2) and its tokenizer, saved in ``directory``."""
    import transformers

    torch.manual_seed(0)
    if family == "t5":
        tokenizer = t5_tokenizer()
        specials = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
        config = transformers.T5Config(
            vocab_size=tokenizer.get_vocab_size() + 3,  # unused rows, as t5-small has
            d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_model=32,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )  # fmt: skip
        model = transformers.T5ForConditionalGeneration(config)
    elif family == "bart":
        tokenizer = word_tokenizer([*BART_SPECIALS, *WORDS], "<unk>")
        tokenizer.add_special_tokens(BART_SPECIALS)
        specials = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>"}
        config = transformers.BartConfig(
            vocab_size=tokenizer.get_vocab_size(), d_model=32, encoder_layers=1,
            decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
            bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
        )  # fmt: skip
        specials["unk_token"] = "<unk>"
        model = transformers.BartForConditionalGeneration(config)
    else:
        tokenizer = word_tokenizer([*WORDS, END_OF_TEXT], END_OF_TEXT)
        tokenizer.add_special_tokens([END_OF_TEXT])
        specials = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT}
        end = tokenizer.token_to_id(END_OF_TEXT)
        config = transformers.GPT2Config(
            vocab_size=tokenizer.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_inner=64,
            n_positions=64, bos_token_id=end, eos_token_id=end,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)
    fast.save_pretrained(directory)
    return directory
