"""The WebRTC server behind ``deepwatch serve``: a page that sends a camera, screen or tab (or
picks a server-side source), a pipeline per session, the annotated video and scores sent back.

Modules: ``app`` (routes, ``create_app``), ``options`` (``ServerOptions``), ``peer`` (one session),
``feeds`` and ``outgoing`` (frames in and out), ``messages`` (the JSON exchanged), ``security``,
``metrics``, ``ice`` (the loopback test option) and ``live`` (wiring to the real pipeline). This
package imports none of them, so the CLI starts without loading aiortc.
"""
