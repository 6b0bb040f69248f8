"""Cluster mode: the same streams on Ray (``deepwatch run SRC ... --ray local|ADDRESS``).

- ``stream_worker``: one Ray actor per source: capture, detection, tracking, crops, and the
  stream's scorer and verdict bookkeeping (the live ``Pipeline``), restarted by Ray when it dies.
- ``encoder_pool``: the face encoder as a pool of Ray actors shared by every stream; each batches
  the crops of concurrent requests into one encoder call and may sit on a GPU node (``num_gpus``).
- ``driver``: the loop on the calling machine: one step in flight per stream, results written to
  the local sinks (overlay file, events, summary) in order per stream, with sequence numbers.
- ``stages``: how a worker builds the real detector, tracker, scorer and encoder from an AppConfig.

``ray`` is an optional dependency (``pip install 'deepwatch[ray]'``); nothing here imports it at
module import time.
"""
