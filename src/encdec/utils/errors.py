"""User-facing errors: a bad config, file or checkpoint ends the run with one clear line; any
other failure keeps its whole traceback in the run dir's log."""

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


class UserError(Exception):
    """A problem the user can fix (a config key, a data file, a checkpoint): no traceback."""


USER_ERRORS = (UserError, OmegaConfBaseException)


def log_to_files(level: int, message: str, exc_info: bool = False) -> None:
    """Write a record to the log files only (the run dir's ``<task>.log``), not the console:
    the console already shows the error, once."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    if exc_info:
        record.exc_info = sys.exc_info()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def exit_on_user_error(function: Callable[..., Any]) -> Callable[..., Any]:
    """A user error prints ``error: <message>`` (one line, also in the run's log) and exits
    with status 2. Any other exception is logged with its traceback into the run's log (in a
    multirun, Hydra reports failures only at the end) and raised as it was."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            message = str(error).strip().splitlines()
            line = f"error: {message[0] if message else type(error).__name__}"
            log_to_files(logging.ERROR, line)
            print(line, file=sys.stderr)
            sys.exit(2)
        except Exception:
            log_to_files(logging.ERROR, "the run failed", exc_info=True)
            raise

    return wrapper
