"""Subword and word tokenizers for sequence-to-sequence data (HF ``tokenizers``).

Two kinds of tokenizer are trained from a corpus:

* ``"bpe"``: byte-level BPE. Every string is encodable (no ``<unk>``) and
  ``decode(encode(s)) == s`` up to NFC normalization and surrounding whitespace.
* ``"word"``: one token per whitespace-separated word, for closed vocabularies such
  as SCAN. Words outside the vocabulary become ``<unk>``.
* ``"char"``: one token per character, the space included (speech recognition's
  transcripts). Characters outside the vocabulary become ``<unk>``.

Every vocabulary starts with the same special tokens at fixed ids (``PAD_ID`` ...
``EOS_ID``). Encoding never adds ``<s>``/``</s>``: the caller does.

:class:`Seq2SeqTokenizer` pairs a source and a target tokenizer (one shared object
when the vocabulary is joint; no source tokenizer when the source is not text, as in
captioning). It serializes to a dict of JSON strings, which is how
it travels inside a model checkpoint, and :func:`load_or_train_tokenizer` caches
trained tokenizers on disk keyed by corpus and settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import random
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from encdec.utils.errors import UserError
from encdec.utils.pretrained_vocabulary import load_pretrained_vocabulary, reordered_tokenizer_json
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS

PAD, UNK, BOS, EOS = SPECIAL_TOKENS  # trainers give them ids 0..3 in this order

KINDS = ("bpe", "word", "char")

_JOINT_FILE = "tokenizer.json"
_SOURCE_FILE = "tokenizer.source.json"
_TARGET_FILE = "tokenizer.target.json"


def train_tokenizer(
    texts: Iterable[str], kind: str, vocab_size: int, min_frequency: int = 2
) -> Tokenizer:
    """Train a ``"bpe"`` or ``"word"`` tokenizer on ``texts``; deterministic for a corpus.

    ``vocab_size`` counts the special tokens. Byte-level BPE always keeps its 256-byte
    base alphabet, so its vocabulary is never smaller than 260.
    """
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # No decoder: Tokenizer.decode then joins the tokens with single spaces.
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
    elif kind == "char":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()  # characters joined as they are
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {KINDS}")
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


class Seq2SeqTokenizer:
    """Source and target tokenizers; ``source is target`` when the vocabulary is joint and
    ``source is None`` when only the target is text (image captioning)."""

    def __init__(self, source: Tokenizer | None, target: Tokenizer) -> None:
        self.source = source
        self.target = target

    @classmethod
    def train(
        cls,
        source_texts: Iterable[str] | None,
        target_texts: Iterable[str],
        kind: str,
        vocab_size: int,
        joint: bool,
        min_frequency: int = 2,
    ) -> Seq2SeqTokenizer:
        """Train one joint tokenizer on both sides, one tokenizer per side, or (no source
        texts) a target tokenizer only."""
        if source_texts is None:
            if joint:
                raise ValueError("a joint vocabulary needs source texts")
            return cls(None, train_tokenizer(target_texts, kind, vocab_size, min_frequency))
        if joint:
            both = itertools.chain(source_texts, target_texts)
            shared = train_tokenizer(both, kind, vocab_size, min_frequency)
            return cls(shared, shared)
        source = train_tokenizer(source_texts, kind, vocab_size, min_frequency)
        target = train_tokenizer(target_texts, kind, vocab_size, min_frequency)
        return cls(source, target)

    @property
    def joint(self) -> bool:
        return self.source is self.target

    @property
    def source_vocab_size(self) -> int:
        return self._source().get_vocab_size(with_added_tokens=True)

    @property
    def target_vocab_size(self) -> int:
        return self.target.get_vocab_size(with_added_tokens=True)

    def vocab_sizes(self) -> dict[str, int]:
        """The model arguments these vocabularies fix: ``target_vocab_size`` and, when the
        source is text, ``source_vocab_size``."""
        sizes = {"target_vocab_size": self.target_vocab_size}
        if self.source is not None:
            sizes["source_vocab_size"] = self.source_vocab_size
        return sizes

    def _source(self) -> Tokenizer:
        if self.source is None:
            raise ValueError("this tokenizer has no source side (its source is not text)")
        return self.source

    def encode_source(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each source text, without ``<s>``/``</s>``."""
        return _encode(self._source(), texts)

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each target text, without ``<s>``/``</s>``."""
        return _encode(self.target, texts)

    def decode_source(self, ids: list[int]) -> str:
        """Detokenized source text of ``ids``, cut at the first ``</s>``."""
        return _decode(self._source(), ids)

    def decode_target(self, ids: list[int]) -> str:
        """Detokenized target text of ``ids``, cut at the first ``</s>``."""
        return _decode(self.target, ids)

    def to_dict(self) -> dict[str, str]:
        """JSON strings of the tokenizers: ``{"joint": ...}``, ``{"source", "target"}`` or
        ``{"target"}`` (no source side)."""
        if self.joint:
            return {"joint": self.source.to_str()}
        if self.source is None:
            return {"target": self.target.to_str()}
        return {"source": self.source.to_str(), "target": self.target.to_str()}

    @classmethod
    def from_dict(cls, state: dict[str, str]) -> Seq2SeqTokenizer:
        """Inverse of :meth:`to_dict`."""
        if "joint" in state:
            shared = Tokenizer.from_str(state["joint"])
            return cls(shared, shared)
        source = Tokenizer.from_str(state["source"]) if "source" in state else None
        return cls(source, Tokenizer.from_str(state["target"]))

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` (joint) or ``tokenizer.{source,target}.json`` (the source
        file only when there is a source side)."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.joint:
            _write_atomic(directory / _JOINT_FILE, self.source.to_str())
            return
        if self.source is not None:
            _write_atomic(directory / _SOURCE_FILE, self.source.to_str())
        _write_atomic(directory / _TARGET_FILE, self.target.to_str())

    @classmethod
    def load(cls, directory: Path) -> Seq2SeqTokenizer:
        """Inverse of :meth:`save`."""
        if (directory / _JOINT_FILE).exists():
            shared = Tokenizer.from_file(str(directory / _JOINT_FILE))
            return cls(shared, shared)
        source_file = directory / _SOURCE_FILE
        source = Tokenizer.from_file(str(source_file)) if source_file.exists() else None
        return cls(source, Tokenizer.from_file(str(directory / _TARGET_FILE)))


def load_or_train_tokenizer(
    cache_dir: Path,
    source_texts: Iterable[str] | None,
    target_texts: Iterable[str],
    kind: str,
    vocab_size: int,
    joint: bool = False,
    min_frequency: int = 2,
    max_pairs: int | None = None,
    corpus_key: str | None = None,
    source_pretrained: str | None = None,
    pretrained: str | None = None,
) -> Seq2SeqTokenizer:
    """The cached tokenizer for this corpus and these settings, trained on a cache miss;
    ``source_texts=None``: a target tokenizer only (captioning); ``source_pretrained``: a
    directory whose ``tokenizer.json`` (a pretrained encoder's) is the source side, the target
    side trained; ``pretrained``: a pretrained model's (hub id or directory) tokenizer reads
    both sides, renumbered to this project's special ids (``utils.pretrained_vocabulary``, as
    the network renumbers the model's rows). With ``max_pairs`` it is
    trained on a seeded uniform sample of that many pairs (``sample_pairs``), so a corpus of
    any size trains it in bounded memory and time.

    The cache entry is ``cache_dir / "tokenizer-<key>"``, keyed by the settings and the corpus:
    its texts (lists), or ``corpus_key`` (a digest of the corpus files), in which case the
    texts may be lazy iterables, read only on a cache miss. A lock file serializes parallel
    jobs, so a tokenizer is trained once and never read half-written.
    """
    if pretrained is not None:
        if source_pretrained is not None:
            raise UserError(
                "data.tokenizer.pretrained reads both sides: leave "
                "data.tokenizer.source_pretrained null"
            )
        backend, order = load_pretrained_vocabulary(pretrained, "data.tokenizer.pretrained")
        shared = Tokenizer.from_str(reordered_tokenizer_json(backend.to_str(), order))
        return Seq2SeqTokenizer(shared, shared)
    if source_pretrained is not None:
        if joint:
            raise UserError(
                "data.tokenizer.source_pretrained reads the source with a pretrained vocabulary: "
                "data.tokenizer.joint=false"
            )
        target = load_or_train_tokenizer(
            cache_dir, None, target_texts, kind, vocab_size, False, min_frequency, max_pairs,
            None if corpus_key is None else f"{corpus_key}-target",
        ).target  # fmt: skip
        return Seq2SeqTokenizer(pretrained_tokenizer(Path(source_pretrained)), target)
    settings = {
        "kind": kind,
        "vocab_size": vocab_size,
        "joint": joint,
        "min_frequency": min_frequency,
        **({"max_pairs": max_pairs} if max_pairs else {}),  # no key change for the default
    }
    if corpus_key is None:
        corpus_key = _corpus_digest(source_texts, target_texts)
    key = _cache_key(corpus_key, settings)[:16]
    path = cache_dir / f"tokenizer-{key}"
    if source_texts is None:
        expected = [_TARGET_FILE]
    else:
        expected = [_JOINT_FILE] if joint else [_SOURCE_FILE, _TARGET_FILE]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f"tokenizer-{key}.lock"):
        if all((path / name).exists() for name in expected):
            return Seq2SeqTokenizer.load(path)
        if max_pairs:
            source_texts, target_texts = sample_pairs(source_texts, target_texts, max_pairs)
        tokenizer = Seq2SeqTokenizer.train(
            source_texts, target_texts, kind, vocab_size, joint, min_frequency
        )
        tokenizer.save(path)
    return tokenizer


def pretrained_tokenizer(directory: Path) -> Tokenizer:
    """A pretrained model's tokenizer (``tokenizer.json`` in ``directory``, as
    ``save_pretrained`` writes it); its padding id must be ``PAD_ID``, as the batches pad."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"data.tokenizer.source_pretrained: '{path}' does not exist")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # batches pad; over-long sentences are dropped, never cut
    tokenizer.no_truncation()
    padding = next(
        (i for name in ("[PAD]", "<pad>") if (i := tokenizer.token_to_id(name)) is not None), None
    )
    if padding != PAD_ID:
        raise UserError(
            f"data.tokenizer.source_pretrained: '{path}' pads with id {padding}, not {PAD_ID}"
        )
    return tokenizer


def sample_pairs(
    source_texts: Iterable[str] | None, target_texts: Iterable[str], count: int, seed: int = 0
) -> tuple[list[str] | None, list[str]]:
    """A uniform random sample of ``count`` (source, target) pairs in corpus order, drawn in
    one pass by reservoir sampling (memory: the sample); all pairs when there are fewer."""
    if count < 1:
        raise ValueError(f"tokenizer.max_pairs must be >= 1, got {count}")
    generator = random.Random(seed)
    pairs = (
        zip(source_texts, target_texts, strict=True)
        if source_texts is not None
        else ((None, target) for target in target_texts)
    )
    reservoir: list[tuple[int, str | None, str]] = []
    for index, (source, target) in enumerate(pairs):
        if index < count:
            reservoir.append((index, source, target))
        elif (slot := generator.randrange(index + 1)) < count:
            reservoir[slot] = (index, source, target)
    reservoir.sort()
    sources = None if source_texts is None else [source for _, source, _ in reservoir]
    return sources, [target for _, _, target in reservoir]


def _encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)  # no offsets
    return [encoding.ids for encoding in encodings]


def _decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Decode up to the first ``</s>``, dropping ``<pad>`` and ``<s>`` (``<unk>`` stays)."""
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    kept = [i for i in ids if i not in (PAD_ID, BOS_ID)]
    return tokenizer.decode(kept, skip_special_tokens=False).strip()


def _corpus_digest(source_texts: Iterable[str] | None, target_texts: Iterable[str]) -> str:
    """SHA-256 hex digest of both sides' texts (no source: target only)."""
    digest = hashlib.sha256()
    if source_texts is None:
        digest.update(b"\0target only\0")
    for side, texts in (("source", source_texts or []), ("target", target_texts)):
        digest.update(f"\0{side}\0".encode())
        count = 0
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
            count += 1
        digest.update(f"\0{count}\0".encode())
    return digest.hexdigest()


def _cache_key(corpus_key: str, settings: dict[str, object]) -> str:
    """SHA-256 hex digest of the settings and the corpus digest."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(corpus_key.encode())
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def token_text(tokenizer: Tokenizer, token_id: int) -> str:
    """One token as text (a byte-level BPE piece decoded, special tokens as they are, a space
    character as "␣")."""
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    if text and text.isspace():
        return "␣"
    return text.strip() or repr(token_id)
