"""Config helpers: resolvers, error-converting instantiation, the rich config tree."""

import os
from pathlib import Path
from typing import Any

import hydra
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from encdec.utils.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")

# W&B stays offline (no account, no network) unless the user asks for WANDB_MODE=online.
OmegaConf.register_new_resolver(
    "wandb_offline", lambda: os.environ.get("WANDB_MODE", "offline") != "online", replace=True
)


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures name the config key in one line."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except hydra.errors.InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0]
        if isinstance(cause, TypeError) and "unexpected keyword argument" in message:
            name = message.split("'")[-2] if "'" in message else message
            message = f"unknown key '{key}.{name}'"
        raise UserError(f"{key}: {message}") from None


def instantiate_group(node: DictConfig | None, key: str) -> list[Any]:
    """Every ``_target_`` entry of a group such as ``callbacks`` or ``logger``."""
    if not node:
        return []
    return [
        instantiate(entry, f"{key}.{name}")
        for name, entry in node.items()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def print_config_tree(cfg: DictConfig, save_path: Path | None = None) -> None:
    """Print the resolved config as a tree, main groups first; save it as YAML too."""
    tree = rich.tree.Tree("config", style="dim", guide_style="dim")
    order = ["data", "model", "decoding", "trainer", "callbacks", "logger", "paths"]
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        tree.add(key).add(rich.syntax.Syntax(text, "yaml"))
    Console().print(tree)
    if save_path is not None:
        save_path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
