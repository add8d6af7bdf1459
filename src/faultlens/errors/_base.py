"""The root of every exception faultlens defines."""

from __future__ import annotations


class FaultlensError(Exception):
    """Base class of every exception faultlens defines or raises.

    Catch this to handle anything faultlens itself raises; an exception
    faultlens raises to a caller says in its message what to do about it.
    """


class ConfigurationError(FaultlensError, ValueError):
    """faultlens was configured with a value it cannot use; the message names it."""


class MissingExtraError(FaultlensError, ImportError):
    """An optional integration was used without its extra installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} needs an optional dependency: run `pip install 'faultlens[{extra}]'`"
        )
        self.extra = extra
