"""The demo: a small shop under simulated traffic, showing what faultlens records.

Run it with ``faultlens demo``.  Needs the ``demo`` extra (Starlette and httpx).
"""

from faultlens.demo.traffic import run_demo

__all__ = ["run_demo"]
