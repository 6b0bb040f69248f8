"""Sources, the pipeline, overlay, sinks, the WebRTC server, the CLI and the app config."""
