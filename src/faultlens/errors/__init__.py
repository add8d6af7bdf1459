"""Errors: the exception tree faultlens defines.

Exception tree::

    FaultlensError
    ├── ConfigurationError (also ValueError)
    └── MissingExtraError (also ImportError)
"""

from faultlens.errors._base import ConfigurationError, FaultlensError, MissingExtraError

__all__ = ["ConfigurationError", "FaultlensError", "MissingExtraError"]
