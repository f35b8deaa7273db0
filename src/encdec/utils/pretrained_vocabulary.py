"""A pretrained model's vocabulary (T5, BART, GPT-2: a hub id or a ``save_pretrained``
directory) with this project's special-token ids.

The project fixes ``<pad> <unk> <s> </s>`` at ids 0..3 (``special_tokens``): batches pad with
0, search starts from 2 and stops at 3. Pretrained vocabularies put theirs elsewhere (T5: pad 0,
eos 1, unk 2, and its decoder starts from pad; BART: bos 0, pad 1, eos 2, unk 3, its decoder
starts from eos; GPT-2 has one ``<|endoftext|>`` and no pad or unk). ``VocabularyOrder``
renumbers such a vocabulary: its four tokens for the project's roles first, then every other
token in its old order. A role the model lacks, or whose token another role already took,
gets a new token (T5's ``<s>`` starts the decoder as its pad did, so it takes pad's embedding;
a token with no source row takes the embeddings' mean).

The tokenizer side (``data.tokenization``) rewrites the tokenizer with the new ids; the network
side (``networks.hugging_face``) reorders the embedding and output rows the same way, so the
renumbered model computes exactly what the pretrained one did on the same text.
"""

import json
from dataclasses import dataclass
from typing import Any

from encdec.utils.errors import UserError
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

ROLE_NAMES = ("pad", "unk", "s", "/s")  # the project's special tokens' roles, in id order


@dataclass(frozen=True)
class VocabularyOrder:
    """``rows[new_id]``: the pretrained id whose embedding (and, unless the id is in
    ``added``, whose text) the new id takes; ``None``: the embeddings' mean."""

    rows: list[int | None]
    added: dict[int, str]  # new id -> the text of a token the pretrained vocabulary lacks

    @property
    def is_identity(self) -> bool:
        return not self.added and self.rows == list(range(len(self.rows)))

    def new_ids(self) -> dict[int, int]:
        """Pretrained id -> new id, for every pretrained token."""
        return {old: new for new, old in enumerate(self.rows) if new not in self.added}


def vocabulary_order(size: int, role_ids: list[int | None], taken: set[str]) -> VocabularyOrder:
    """The order for a vocabulary of ``size`` tokens whose tokens for the project's roles
    (pad, unk, start, end) are ``role_ids`` (``None``: none); ``taken``: its tokens' texts,
    which new tokens avoid."""
    rows: list[int | None] = [None] * len(SPECIAL_TOKENS)
    added: dict[int, str] = {}
    for role in (PAD_ID, UNK_ID, EOS_ID, BOS_ID):  # the end keeps a token it shares with the start
        old = role_ids[role]
        if old is None or old in rows:  # a new token (copying the row another role took)
            name = SPECIAL_TOKENS[role]
            added[role] = name if name not in taken else f"<encdec:{ROLE_NAMES[role]}>"
        rows[role] = old
    placed = set(rows)
    rows += [old for old in range(size) if old not in placed]
    return VocabularyOrder(rows, added)


def load_pretrained_vocabulary(pretrained: str, key: str) -> tuple[Any, VocabularyOrder]:
    """The fast tokenizer of ``pretrained`` (``transformers``' ``AutoTokenizer``) and the order
    that gives it this project's special ids; ``key`` names the setting in errors."""
    try:
        tokenizer, order = _tokenizer_and_order(pretrained)
    except (OSError, ValueError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"{key}={pretrained}: {first_line}") from None
    if not tokenizer.is_fast:
        raise UserError(f"{key}={pretrained}: has no fast tokenizer (tokenizer.json)")
    return tokenizer.backend_tokenizer, order


def pretrained_vocabulary_order(pretrained: str) -> VocabularyOrder | None:
    """The order of ``pretrained``'s vocabulary, or ``None`` where it has no tokenizer (a model
    saved alone, which reads this project's vocabulary)."""
    try:
        return _tokenizer_and_order(pretrained)[1]
    except (OSError, ValueError, TypeError):
        return None


def _tokenizer_and_order(pretrained: str) -> tuple[Any, VocabularyOrder]:
    """The decoder's start token is the config's ``decoder_start_token_id`` (encoder-decoders)
    or the tokenizer's BOS (decoder-only)."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import cached_file

    files = ("tokenizer.json", "tokenizer_config.json")
    found = (
        cached_file(pretrained, name, _raise_exceptions_for_missing_entries=False) for name in files
    )
    if not any(found):  # AutoTokenizer would build an empty default one
        raise OSError("it has no tokenizer (tokenizer.json or tokenizer_config.json)")
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    config = AutoConfig.from_pretrained(pretrained)
    start = getattr(config, "decoder_start_token_id", None)
    if not getattr(config, "is_encoder_decoder", False) or start is None:
        start = tokenizer.bos_token_id
    role_ids = [tokenizer.pad_token_id, tokenizer.unk_token_id, start, tokenizer.eos_token_id]
    return tokenizer, vocabulary_order(len(tokenizer), role_ids, set(tokenizer.get_vocab()))


def reordered_tokenizer_json(tokenizer_json: str, order: VocabularyOrder) -> str:
    """A ``tokenizers`` JSON whose ids are ``order``'s: the model's vocabulary renumbered (a
    Unigram's list reordered, the new tokens placed in it as never-chosen pieces), the added
    tokens renumbered and the new ones added as special tokens. No post-processor: the project
    adds ``<s>``/``</s>`` itself."""
    state = json.loads(tokenizer_json)
    new_ids = order.new_ids()
    model = state["model"]
    if model["type"] == "Unigram":
        pieces = model["vocab"]  # [text, log probability], a piece's id its position
        never = min(score for _, score in pieces) - 10.0  # a log probability no path takes
        texts = {token["id"]: token["content"] for token in state.get("added_tokens") or []}
        entries = [
            [order.added[new], never]
            if new in order.added
            else pieces[old]
            if old < len(pieces)
            else [texts[old], never]
            for new, old in enumerate(order.rows[: len(SPECIAL_TOKENS)])
        ] + [pieces[old] for old in order.rows[len(SPECIAL_TOKENS) :] if old < len(pieces)]
        model["vocab"] = entries
        if model.get("unk_id") is not None:
            model["unk_id"] = new_ids[model["unk_id"]]
    else:  # BPE, WordPiece, WordLevel: a token -> id map
        vocabulary = {text: new_ids[old] for text, old in model["vocab"].items()}
        model["vocab"] = vocabulary | {text: new for new, text in order.added.items()}
    state["added_tokens"] = [
        {**token, "id": new_ids[token["id"]]} for token in state.get("added_tokens") or []
    ]
    state["added_tokens"] += [
        {
            "id": new,
            "content": text,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for new, text in order.added.items()
    ]
    state["post_processor"] = None
    state["padding"] = None
    state["truncation"] = None
    return json.dumps(state, ensure_ascii=False)
