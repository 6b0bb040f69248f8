"""The live chain: scheduling and cross-stream batching of detect -> track -> crop -> encode ->
score, the per-track bookkeeping, verdicts, alerts, the overlay, and the run loop.

Modules: ``pipeline`` (scheduling), ``bookkeeping`` (what is remembered per track and the events),
``batching`` (the shared detection and scoring workers), ``runner`` (sources -> pipeline -> sinks),
``app`` (building the real pipeline from loaded models), ``alerts``, ``verdict``, ``overlay``,
``track_record`` and ``stats``. It reads ``stream.contracts``, ``stream.sources`` and
``stream.sinks``; it never imports the server, the commands or the app config. This package
imports none of its modules, so the config can import the live chain's settings cheaply.
"""
