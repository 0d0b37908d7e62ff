"""Peer pipelines the engine is measured against.

Each peer runs the engine's own pipeline (feed -> W book workers -> aggregator
-> snapshot table) with the same kernels on the same event stream, and only
the transport between the processes replaced: ``multiprocessing.Queue``
(``mpqueue``), ``faster_fifo.Queue`` (``fastfifo``) or pyzmq PUSH/PULL over
``ipc://`` (``zmqipc``), each once with many events per message and once with
one event per message. ``compare.py`` runs them beside the engine and checks
that every one ends with the engine's snapshot table.
"""
