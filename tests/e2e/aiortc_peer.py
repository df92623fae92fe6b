"""aiortc as an independent WebRTC peer for rkms's end-to-end tests.

Sends a synthetic camera (ffmpeg's testsrc through PyAV) and a tone with one
video codec preferred, and counts the video frames it decodes from what comes
back. Speaks JSON lines with the node test that plays Kurento's app server:

  -> {"offer": sdp}            (non-trickle: aiortc's offer holds its candidates)
  <- {"answer": sdp}           (with rkms's candidates in it)
  -> {"frames": n, "width": w, "height": h}   once enough frames are decoded (or at timeout)
  -> {"error": text}           on failure
"""

import argparse
import asyncio
import json
import sys

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


def say(message):
    print(json.dumps(message), flush=True)


async def read_line():
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise RuntimeError("the test closed the pipe")
    return json.loads(line)


async def run(codec, frames_wanted, timeout):
    pc = RTCPeerConnection()
    camera = MediaPlayer("testsrc=size=320x240:rate=15", format="lavfi")
    tone = MediaPlayer("sine=frequency=440:sample_rate=48000", format="lavfi")
    pc.addTrack(tone.audio)
    video = pc.addTransceiver(camera.video, direction="sendrecv")
    wanted = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType.lower() in (f"video/{codec.lower()}", "video/rtx")
    ]
    video.setCodecPreferences(wanted)

    decoded = {"frames": 0, "width": 0, "height": 0}
    done = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track):
        if track.kind != "video":
            return

        async def consume():
            while not done.done():
                frame = await track.recv()
                decoded["frames"] += 1
                decoded["width"], decoded["height"] = frame.width, frame.height
                if decoded["frames"] >= frames_wanted:
                    done.set_result(True)

        asyncio.ensure_future(consume())

    await pc.setLocalDescription(await pc.createOffer())
    say({"offer": pc.localDescription.sdp})
    answer = (await read_line())["answer"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        say(decoded)
        await pc.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--codec", default="VP8")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    try:
        asyncio.run(run(args.codec, args.frames, args.timeout))
    except Exception as e:  # reported to the test, which fails with it
        say({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
