"""User-facing errors: a bad config, file or checkpoint ends the run with one clear line."""

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import OmegaConfBaseException


class UserError(Exception):
    """A problem the user can fix (a config key, a data file, a checkpoint): no traceback."""


def exit_on_user_error(function: Callable[..., Any]) -> Callable[..., Any]:
    """Print ``error: <message>`` and exit with status 2 instead of a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (UserError, OmegaConfBaseException) as error:
            message = str(error).strip().splitlines()
            print(f"error: {message[0] if message else type(error).__name__}", file=sys.stderr)
            sys.exit(2)

    return wrapper
