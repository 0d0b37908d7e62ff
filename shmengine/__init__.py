"""shmengine: a shared-memory multicore event-processing engine for market data."""

from .layout import PRICE_SCALE
from .attach import Engine, Lapped, UnknownSymbol, attach

__all__ = ["attach", "Engine", "Lapped", "UnknownSymbol", "PRICE_SCALE"]
