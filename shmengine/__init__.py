"""shmengine: a shared-memory multicore event-processing engine for market data."""
