"""Config validation at start-up, before any data is read or model built.

Every node with a ``_target_`` (data, model and the nodes inside it: the network, its encoder
and decoder, the optimizer, the schedule; trainer, each callback and logger) is checked against
the signature of the class it names: unknown keys, missing required keys and values of the
wrong type fail with one line naming the key and what is allowed. A ``_partial_`` node's
missing arguments are the code's to give. ``data.tokenizer`` is checked against the function it
feeds, and ``decoding`` against ``DecodingConfig``. ``RANGES`` bounds the numeric settings
whose range a type cannot say (dropout in [0, 1), beam_size >= 1, ...).

The schema is the code itself: a constructor's signature and type hints are the one place a
setting is declared, so a new option needs no second declaration here.
"""

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from encdec.data.tokenization import load_or_train_tokenizer
from encdec.decoding.search import DecodingConfig
from encdec.training.schedules import check_step_budget
from encdec.utils.errors import UserError

HYDRA_KEYS = {"_target_", "_convert_", "_partial_", "_recursive_", "_args_"}
# setting name -> (low, high, low inclusive, high inclusive), wherever the setting appears
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "dropout": (0, 1, True, False),
    "attention_dropout": (0, 1, True, False),
    "label_smoothing": (0, 1, True, False),
    "teacher_forcing_ratio": (0, 1, True, True),
    "val_fraction": (0, 1, False, False),
    "lr": (0, math.inf, False, False),
    "encoder_lr": (0, math.inf, False, False),
    "weight_decay": (0, math.inf, True, False),
    "length_penalty": (0, math.inf, True, False),
    "max_len_a": (0, math.inf, True, False),
    "max_len_b": (0, math.inf, True, False),
    "warmup_steps": (0, math.inf, True, False),
    "num_workers": (0, math.inf, True, False),
    "attention_regularization": (0, math.inf, True, False),
    "ctc_weight": (0, 1, True, True),
    "lm_weight": (0, 1, True, True),
    "temperature": (0, math.inf, False, False),
    "top_k": (0, math.inf, True, False),
    "top_p": (0, 1, False, True),
    **{
        name: (1, math.inf, True, False)
        for name in (
            "beam_size",
            "n_best",
            "order",
            "max_tokens",
            "max_length",
            "vocab_size",
            "num_layers",
            "encoder_layers",
            "decoder_layers",
            "hidden_size",
            "embedding_dim",
            "d_model",
            "dim",
            "num_heads",
            "ff_dim",
            "max_positions",
            "batch_size",
            "image_size",
            "max_pairs",
        )
    },
}
# arguments the entry points pass themselves, per node
FILLED_IN = {
    "model.net": frozenset({"source_vocab_size", "target_vocab_size"}),
    "trainer": frozenset({"callbacks", "logger"}),
}
# nested settings without a _target_ -> the function they are passed to, and its parameters the
# code fills in
NESTED: dict[str, tuple[Callable[..., Any], set[str]]] = {
    "tokenizer": (
        load_or_train_tokenizer,
        {"cache_dir", "source_texts", "target_texts", "corpus_key"},
    ),
}


def validate_config(cfg: DictConfig) -> None:
    """Raise ``UserError`` naming the first bad key of the composed config."""
    for group in ("data", "model", "trainer", "callbacks", "logger"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node:
            validate_node(node, group, FILLED_IN.get(group, frozenset()))
        elif isinstance(node, DictConfig):  # a group of instantiated entries
            for name, entry in node.items():
                if isinstance(entry, DictConfig) and "_target_" in entry:
                    validate_node(entry, f"{group}.{name}")
    if "decoding" in cfg:
        fields = {field.name: field.type for field in dataclasses.fields(DecodingConfig)}
        given = {k: v for k, v in _values(cfg.decoding).items() if v is not None}  # null: default
        check_settings(given, fields, set(), "decoding")
    scheduler, trainer = OmegaConf.select(cfg, "model.scheduler._target_"), cfg.get("trainer")
    if scheduler is not None and trainer is not None:  # Lightning's defaults where unset
        limits = trainer.get("max_steps", -1), trainer.get("max_epochs"), trainer.get("max_time")
        check_step_budget(hydra.utils.get_object(scheduler), *limits)


def check_devices(trainer: DictConfig) -> None:
    """``trainer.devices`` GPUs must exist here (CPU "devices" are processes: any number)."""
    accelerator, devices = trainer.get("accelerator"), trainer.get("devices")
    available = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > available:
        hint = (
            "; without a GPU use trainer=cpu, or trainer=ddp_sim for DDP" if not available else ""
        )
        raise UserError(f"trainer.devices={devices} but this machine has {available} GPU(s){hint}")


def validate_node(node: DictConfig, key: str, filled_in: frozenset[str] = frozenset()) -> None:
    """Check a ``_target_`` node and the ``_target_`` nodes inside it; ``filled_in`` are the
    arguments the code passes itself (all missing ones, for a ``_partial_`` node)."""
    check_target_node(_values(node), key, filled_in)


def check_target_node(values: dict[str, Any], key: str, filled_in: frozenset[str]) -> None:
    try:
        target = hydra.utils.get_object(values["_target_"])
    except Exception:
        raise UserError(f"{key}._target_: cannot import '{values['_target_']}'") from None
    parameters, required, accepts_any = signature_parameters(target)
    if values.get("_partial_"):
        required = set()
    settings = {k: v for k, v in values.items() if k not in HYDRA_KEYS}
    nested = {k: v for k, v in settings.items() if isinstance(v, dict) and "_target_" in v}
    checked = {k: v for k, v in settings.items() if k not in nested}
    if accepts_any:  # unknown keys cannot be judged; the known ones still can
        checked = {k: v for k, v in checked.items() if k in parameters}
    check_settings(checked, parameters, required - filled_in - set(nested), key)
    for name in nested:
        if name not in parameters and not accepts_any:
            raise UserError(f"unknown key '{key}.{name}'; {suggest(name, parameters)}")
        check_target_node(
            nested[name], f"{key}.{name}", FILLED_IN.get(f"{key}.{name}", frozenset())
        )
    for name, (function, code_filled) in NESTED.items():
        if isinstance(settings.get(name), dict) and name not in nested:
            hints, nested_required, _ = signature_parameters(function)
            hints = {k: hint for k, hint in hints.items() if k not in code_filled}
            check_settings(settings[name], hints, nested_required - code_filled, f"{key}.{name}")


def signature_parameters(target: Any) -> tuple[dict[str, Any], set[str], bool]:
    """The keyword parameters of ``target`` with their type hints (a class: its ``__init__``
    and, where an encdec class passes ``**kwargs`` on to its base, the base's), the required
    ones (of the first constructor), and whether it accepts keywords beyond those."""
    hints: dict[str, Any] = {}
    required: set[str] = set()
    functions = (  # the constructors a class's MRO defines, in the order its **kwargs pass on
        [c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
        if isinstance(target, type)
        else [target]
    )
    for depth, function in enumerate(functions):
        if function is object.__init__:
            return hints, required, False
        try:
            resolved = typing.get_type_hints(function)
        except Exception:  # unresolvable annotations: check keys, not types
            resolved = {}
        signature = inspect.signature(function)
        for name, parameter in signature.parameters.items():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                if name != "self" and name not in hints:
                    hints[name] = resolved.get(name, Any)
                    if depth == 0 and parameter.default is parameter.empty:
                        required.add(name)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            return hints, required, False
        if not function.__module__.startswith("encdec."):
            break  # a library's **kwargs may go anywhere; encdec's go to the base class
    return hints, required, True


def check_settings(
    values: dict[str, Any], hints: dict[str, Any], required: set[str], key: str
) -> None:
    for name, value in values.items():
        if name not in hints:
            raise UserError(f"unknown key '{key}.{name}'; {suggest(name, hints)}")
        if not matches(value, hints[name]):
            raise UserError(f"{key}.{name}={value!r}: expected {describe(hints[name])}")
        if name in RANGES and isinstance(value, int | float) and not isinstance(value, bool):
            low, high, low_closed, high_closed = RANGES[name]
            if not (
                (value >= low if low_closed else value > low)
                and (value <= high if high_closed else value < high)
            ):
                interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
                raise UserError(f"{key}.{name}={value!r}: must be in {interval}")
    missing = sorted(required - set(values))
    if missing:
        raise UserError(f"missing key '{key}.{missing[0]}'")


def suggest(name: str, allowed: dict[str, Any]) -> str:
    """'did you mean ...' for a near miss, else the allowed keys (when few enough to read)."""
    close = difflib.get_close_matches(name, allowed, n=3)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if len(allowed) <= 20:
        return "allowed: " + ", ".join(sorted(allowed))
    return f"it is none of the {len(allowed)} allowed keys"


def matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits a type hint; hints it cannot judge pass."""
    origin = typing.get_origin(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, list | tuple)
    return True


def describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint is type(None):
        return "null"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _values(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)
