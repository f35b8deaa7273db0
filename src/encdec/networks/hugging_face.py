"""Hugging Face ``transformers`` models behind the step interface, trained by the same module
and decoded by the same search as every network: an encoder-decoder (T5, BART:
``HuggingFaceEncoderDecoder``) or a decoder-only LM (GPT-2: ``HuggingFaceDecoderOnly``).

``config`` is a partial ``transformers`` config class (``T5Config``, ``BartConfig``,
``GPT2Config``): the network gives it this project's vocabulary size and special token ids and
builds the model (the class follows from the config, as ``AutoModel*.from_config`` picks it).
``pretrained`` (a hub id, or a directory written by ``save_pretrained``) loads a model and its
weights instead. Where it comes with its own tokenizer, its vocabulary is renumbered so that its
special tokens have this project's ids (``utils.pretrained_vocabulary``; the data reads it with
``data.tokenizer.pretrained``, the same renumbering); a model saved alone must have the
tokenizer's vocabulary. A checkpoint keeps the loaded model's
architecture (``config_node``), so it loads without the pretrained directory.

Caches are ``transformers``' own: a state's ``reorder`` reorders its cache in place (search
never reuses a state it has reordered); a decoder-only memory (the source's prefill) is copied
(its tensors shared) before a state extends it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from encdec.networks.network import Network, TeacherForced
from encdec.utils.errors import UserError
from encdec.utils.pretrained_vocabulary import VocabularyOrder, pretrained_vocabulary_order
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID

UNLIMITED = 1 << 30  # relative positions (T5): no length limit of the model's own


@dataclass
class EncoderStates:
    """An encoder-decoder's encoded source."""

    states: torch.Tensor  # (B, S, D)
    mask: torch.Tensor  # (B, S) True = a real position

    def reorder(self, index: torch.Tensor) -> "EncoderStates":
        return EncoderStates(self.states.index_select(0, index), self.mask.index_select(0, index))


@dataclass
class CacheState:
    """The key/value cache of the positions decoded so far (``transformers``' ``Cache``)."""

    cache: Any  # transformers.Cache: (B, H, t, D/H) per layer
    length: int  # t: target positions decoded

    def reorder(self, index: torch.Tensor) -> "CacheState":
        self.cache.reorder_cache(index)  # in place
        return CacheState(self.cache, self.length)


def copy_cache(cache: Any, config: Any) -> Any:
    """A new ``DynamicCache`` over the same key/value tensors: updates concatenate into new
    tensors and reorders select into new ones, so the copy never changes ``cache``."""
    from transformers import DynamicCache

    return DynamicCache(list(cache), config=config)


@dataclass
class Prefill:
    """A decoder-only model's source: every layer's keys/values over it, and its mask."""

    cache: Any  # transformers.DynamicCache over the source: (B, H, S, D/H) per layer
    mask: torch.Tensor  # (B, S) True = a real source position
    config: Any  # the model's config (for copies of the cache)

    def reorder(self, index: torch.Tensor) -> "Prefill":
        cache = copy_cache(self.cache, self.config)
        cache.reorder_cache(index)
        return Prefill(cache, self.mask.index_select(0, index), self.config)


def build_model(
    auto_class: Any,
    config: Callable[..., Any] | None,
    pretrained: str | None,
    vocab_size: int,
) -> Any:
    """A ``transformers`` model: ``pretrained`` loaded (its vocabulary renumbered to this
    project's special ids where it comes with its own tokenizer), or built from ``config`` for
    this project's vocabulary and special token ids."""
    if pretrained is not None:
        try:
            model = auto_class.from_pretrained(pretrained)
        except OSError as error:
            first_line = str(error).strip().splitlines()[0]
            raise UserError(f"model.net.pretrained={pretrained}: {first_line}") from None
        order = pretrained_vocabulary_order(pretrained)
        if order is not None and not order.is_identity:
            renumber_vocabulary(model, order)
        if model.config.vocab_size != vocab_size:
            advice = (
                f"read the data with its tokenizer, data.tokenizer.pretrained={pretrained}"
                if order is not None
                else "use a model saved with this project's tokenizer"
            )
            raise UserError(
                f"model.net.pretrained={pretrained} has a vocabulary of "
                f"{model.config.vocab_size} tokens, the tokenizer {vocab_size}: {advice}"
            )
        return model
    if config is None:
        raise UserError("model.net needs a config (a transformers config class) or pretrained")
    special = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    built = config(vocab_size=vocab_size, decoder_start_token_id=BOS_ID, **special)
    return auto_class.from_config(built)


def renumber_vocabulary(model: Any, order: VocabularyOrder) -> None:
    """Give ``model``'s embedding and output rows (and BART's logit bias) ``order``'s ids, and
    its config this project's special ids: on the renumbered tokens it computes what it did."""

    def reordered(rows: torch.Tensor) -> torch.Tensor:
        # rows: (V, ...) -> (V', ...); a new token without a source row takes the mean
        index = torch.tensor([len(rows) if old is None else old for old in order.rows])
        return torch.cat([rows, rows.mean(0, keepdim=True)])[index]

    embeddings = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    untied = output is not None and output.weight.data_ptr() != embeddings.data_ptr()
    old = {  # copies: resizing replaces or truncates these tensors
        name: None if rows is None else rows.detach().clone()
        for name, rows in {
            "embeddings": embeddings,
            "output": output.weight if untied else None,
            "output_bias": getattr(output, "bias", None),
            "logits_bias": getattr(model, "final_logits_bias", None),  # BART: (1, V)
        }.items()
    }
    model.resize_token_embeddings(len(order.rows), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(reordered(old["embeddings"]))
        if old["output"] is not None:
            model.get_output_embeddings().weight.copy_(reordered(old["output"]))
        if old["output_bias"] is not None:
            model.get_output_embeddings().bias.copy_(reordered(old["output_bias"]))
        if old["logits_bias"] is not None:
            model.final_logits_bias.copy_(reordered(old["logits_bias"].T).T)
    model.config.pad_token_id, model.config.bos_token_id = PAD_ID, BOS_ID
    model.config.eos_token_id = EOS_ID
    if getattr(model.config, "is_encoder_decoder", False):
        model.config.decoder_start_token_id = BOS_ID


def joint_vocabulary(source_vocab_size: int | None, target_vocab_size: int) -> int:
    if source_vocab_size != target_vocab_size:
        raise UserError(
            "a transformers model reads source and target with one embedding table: it needs a "
            f"joint vocabulary, data.tokenizer.joint=true (source {source_vocab_size} != target "
            f"{target_vocab_size} tokens)"
        )
    return target_vocab_size


class HuggingFaceNetwork(Network):
    """What both wrappers share: the model (of the ``transformers`` auto class
    ``auto_class``), no front-end or CTC head, and the checkpoint node."""

    auto_class: str

    def __init__(
        self,
        target_vocab_size: int,
        source_vocab_size: int | None = None,
        config: Callable[..., Any] | None = None,
        pretrained: str | None = None,
    ) -> None:
        import transformers

        super().__init__(target_vocab_size, source_vocab_size)
        vocab_size = joint_vocabulary(source_vocab_size, target_vocab_size)
        auto_class = getattr(transformers, self.auto_class)
        self.model = build_model(auto_class, config, pretrained, vocab_size)
        self.frontend, self.ctc_head = None, None
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_output_length = limit - 1 if limit else UNLIMITED

    def config_node(self, node: dict[str, Any]) -> dict[str, Any]:
        """The ``net`` config node a checkpoint keeps: the model's whole architecture in
        ``config``, not the pretrained path (the weights are in the checkpoint)."""
        if node.get("pretrained") is None:
            return node
        config_class = type(self.model.config)
        architecture = {
            key: value
            for key, value in self.model.config.to_dict().items()
            if key not in ("transformers_version", "architectures", "model_type")
        }
        target = f"{config_class.__module__}.{config_class.__name__}"
        return {
            **node,
            "pretrained": None,
            "config": {"_target_": target, "_partial_": True, **architecture},
        }


class HuggingFaceEncoderDecoder(HuggingFaceNetwork):
    """T5, BART or any ``AutoModelForSeq2SeqLM``: ``encode`` runs its encoder, ``step`` one
    cached decoder call (self- and cross-attention keys/values in the cache)."""

    auto_class = "AutoModelForSeq2SeqLM"

    @property
    def encoder(self) -> torch.nn.Module:
        return self.model.get_encoder()

    @property
    def decoder(self) -> torch.nn.Module:
        return self.model.get_decoder()

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> EncoderStates:
        # src: (B, S) token ids -> states (B, S, D)
        encoded = self.encoder(input_ids=src, attention_mask=src_mask.long())
        return EncoderStates(encoded.last_hidden_state, src_mask)

    def init_state(self, memory: EncoderStates) -> CacheState:
        from transformers import DynamicCache, EncoderDecoderCache

        config = self.model.config
        return CacheState(
            EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config)), 0
        )

    def step(
        self, prev_tokens: torch.Tensor, state: CacheState, memory: EncoderStates
    ) -> tuple[torch.Tensor, CacheState, None]:
        # prev_tokens: (B,) -> logits (B, V)
        from transformers.modeling_outputs import BaseModelOutput

        output = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory.states),
            attention_mask=memory.mask.long(),
            decoder_input_ids=prev_tokens.unsqueeze(1),
            cache=state.cache,
            use_cache=True,
        )
        return output.logits[:, -1], CacheState(output.cache, state.length + 1), None

    def teacher_forced(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> TeacherForced:
        # src: (B, S), tgt_in: (B, T) -> logits (B, T, V)
        output = self.model(
            input_ids=src, attention_mask=src_mask.long(), decoder_input_ids=tgt_in, use_cache=False
        )
        return TeacherForced(output.logits, None, None, None)


class HuggingFaceDecoderOnly(HuggingFaceNetwork):
    """GPT-2 or any ``AutoModelForCausalLM`` over ``source <sep> target`` (the target's BOS the
    separator), causal throughout: ``encode`` prefills the cache with the source, ``step``
    extends a copy of it. Each row's target positions continue from its own source length."""

    auto_class = "AutoModelForCausalLM"

    @property
    def encoder(self) -> torch.nn.Module:
        return self.model  # one stack: what reads the source is the whole model

    @property
    def decoder(self) -> torch.nn.Module:
        return self.model

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Prefill:
        from transformers import DynamicCache

        positions = torch.arange(src.size(1), device=src.device).expand_as(src)
        output = self.model(
            input_ids=src,
            attention_mask=src_mask.long(),
            position_ids=positions,
            cache=DynamicCache(config=self.model.config),
            use_cache=True,
        )
        return Prefill(output.cache, src_mask, self.model.config)

    def init_state(self, memory: Prefill) -> CacheState:
        return CacheState(copy_cache(memory.cache, self.model.config), 0)

    def _target_logits(
        self, tgt_in: torch.Tensor, prefix_mask: torch.Tensor, cache: Any, decoded: int
    ) -> tuple[torch.Tensor, Any]:
        # tgt_in: (B, T) after `decoded` target positions -> logits (B, T, V), the cache
        batch, length = tgt_in.shape
        first = prefix_mask.sum(1, keepdim=True) + decoded  # (B, 1)
        positions = first + torch.arange(length, device=tgt_in.device)  # (B, T)
        seen = torch.ones(batch, decoded + length, dtype=torch.long, device=tgt_in.device)
        output = self.model(
            input_ids=tgt_in,
            attention_mask=torch.cat([prefix_mask.long(), seen], dim=1),
            position_ids=positions,
            cache=cache,
            use_cache=True,
        )
        return output.logits, output.cache

    def step(
        self, prev_tokens: torch.Tensor, state: CacheState, memory: Prefill
    ) -> tuple[torch.Tensor, CacheState, None]:
        # prev_tokens: (B,) -> logits (B, V)
        logits, cache = self._target_logits(
            prev_tokens.unsqueeze(1), memory.mask, state.cache, state.length
        )
        return logits[:, -1], CacheState(cache, state.length + 1), None

    def teacher_forced(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> TeacherForced:
        # the source prefilled, then every target position at once: logits (B, T, V)
        prefill = self.encode(src, src_mask)
        logits, _ = self._target_logits(tgt_in, src_mask, prefill.cache, 0)
        return TeacherForced(logits, None, None, None)
