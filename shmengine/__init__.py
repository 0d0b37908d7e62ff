"""shmengine: a shared-memory multicore event-processing engine for market data."""
import os as _os

from . import kernel_cache as _kernel_cache

_kernel_cache.drop_stale(_os.path.dirname(_os.path.abspath(__file__)))

from .layout import PRICE_SCALE  # noqa: E402
from .attach import Engine, EngineDied, Lapped, UnknownSymbol, attach  # noqa: E402

__all__ = ["attach", "Engine", "EngineDied", "Lapped", "UnknownSymbol", "PRICE_SCALE"]
