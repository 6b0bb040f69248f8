"""A real RTSP server on loopback serving a video file, for the reconnection test.

Runs under Debian's system python3 (GStreamer's RTSP server through PyGObject:
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-{base,good,bad,ugly},
gstreamer1.0-libav), not the project's virtual environment:

    /usr/bin/python3 tests/stream/rtsp_server.py --port 8554 --path /live --file clip.mp4

The file is decoded and re-encoded as low-latency H.264 and played in real time, like a camera.
Prints "READY rtsp://127.0.0.1:PORT/PATH" on stdout once clients can connect; runs until killed.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 (require_version must come first)


def launch_line(path: str, width: int, height: int, fps: int) -> str:
    # Decoded and re-encoded (not remuxed) so the stream has frequent keyframes and no B-frames:
    # a client that (re)connects mid-stream can decode within a fraction of a second.
    return (
        f'( filesrc location="{path}" ! decodebin ! videoconvert ! videoscale ! videorate '
        f"! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/live")
    parser.add_argument("--file", required=True)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file, args.width, args.height, args.fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
