"""An RTSP camera on loopback for the PlayerEndpoint tests and bench, with GStreamer's RTSP server.

usage: rtsp_camera.py PORT [MOUNTS] [--audio pcmu|none] [--sprop-only]

Serves MOUNTS (default 1) live test patterns at rtsp://127.0.0.1:PORT/cam0, /cam1, ...: H264
(x264, constrained baseline, a keyframe a second) and, with --audio pcmu, a PCMU tone. With
--sprop-only the camera sends SPS/PPS only in the SDP (sprop-parameter-sets), never in band,
as some cameras do. Prints "ready PORT" once listening; PORT 0 lets the system choose.
Runs until killed.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

args = argparse.ArgumentParser()
args.add_argument("port", type=int)
args.add_argument("mounts", type=int, nargs="?", default=1)
args.add_argument("--audio", choices=["pcmu", "none"], default="none")
args.add_argument("--sprop-only", action="store_true")
opts = args.parse_args()

Gst.init(None)
video = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300 "
    "! video/x-h264,profile=constrained-baseline,stream-format=avc,alignment=au "
    f"! rtph264pay name=pay0 pt=96 config-interval={0 if opts.sprop_only else -1}"
)
audio = (
    " audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 "
    "! mulawenc ! rtppcmupay name=pay1 pt=0"
)
launch = f"( {video}{audio if opts.audio == 'pcmu' else ''} )"

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(str(opts.port))
for i in range(opts.mounts):
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    # One encoder per mount, shared by its viewers, as a camera has.
    factory.set_shared(True)
    server.get_mount_points().add_factory(f"/cam{i}", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {opts.port}")
print(f"ready {server.get_bound_port()}", flush=True)
GLib.MainLoop().run()
