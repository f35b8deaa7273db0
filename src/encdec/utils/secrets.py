"""Keeping secrets out of what a run saves and logs.

A secret is the value of an environment variable whose name says it is one (``WANDB_API_KEY``,
``HF_TOKEN``, ``..._SECRET``, ``..._PASSWORD``). Config text and logged hyperparameters pass
through ``redact``, so a key that reaches the config (``${oc.env:WANDB_API_KEY}``, say) is
never written into the run dir nor sent to a logger.
"""

import os
import re
from typing import Any

SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") are settings, and too common to replace
REDACTED = "<redacted>"


def secret_values() -> list[str]:
    """The values of the secret environment variables set now, longest first."""
    values = {
        value
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(value: Any) -> Any:
    """``value`` (a string, or dicts/lists of them) with every secret replaced by
    ``<redacted>``; other values are returned as they are."""
    secrets = secret_values()
    if not secrets:
        return value
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, secrets) for item in value)
    return value
