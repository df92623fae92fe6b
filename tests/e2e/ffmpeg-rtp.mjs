// ffmpeg as a plain RTP peer of an RtpEndpoint: the SDP it answers with, the
// encoders it sends, and the child processes to clean up. Used by the
// RtpEndpoint and loss tests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';

const children = new Set();

/** Kills the ffmpeg processes still running. */
export function killFfmpegs() {
  for (const child of children) child.kill('SIGKILL');
}

/** The port, profile and payload types of an SDP's first `media` line. */
export function mediaLine(sdp, media) {
  const lines = sdp.split(/\r?\n/);
  const start = lines.findIndex((l) => l.startsWith(`m=${media} `));
  assert.ok(start >= 0, `no m=${media} in ${sdp}`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('m='));
  const section = lines.slice(start, end < 0 ? undefined : end);
  const [, port, proto] = lines[start].split(' ');
  const pt = (name) => {
    const map = section.find((l) => new RegExp(`^a=rtpmap:\\d+ ${name}/`, 'i').test(l));
    return map && Number(map.match(/^a=rtpmap:(\d+)/)[1]);
  };
  return { port: Number(port), proto, pt, section };
}

/** A UDP port with a free neighbour (for ffmpeg's RTP and RTCP). */
export async function freePortPair() {
  for (;;) {
    const port = await new Promise((resolve) => {
      const s = createSocket('udp4');
      s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    if (port % 2 === 0 && port < 65000) return port;
  }
}

export function runFfmpeg(args) {
  const child = spawn('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  children.add(child);
  const exited = new Promise((resolve) => child.on('exit', (code) => {
    children.delete(child);
    resolve({ code, stderr });
  }));
  return { child, exited };
}

/** An SDP for ffmpeg's side: its address, port and the one codec (after a
 * refused audio line when answering rkms's audio+video offer); `version` of its
 * `o=` line goes up in re-offers, `lifetime` follows the SDES key (`2^10`). */
export function peerSdp({ port, proto = 'RTP/AVP', pt, rtpmap, fmtp, direction, crypto, lifetime, refuseAudio,
  version = 0 }) {
  return ['v=0', `o=- 0 ${version} IN IP4 127.0.0.1`, 's=ffmpeg', 'c=IN IP4 127.0.0.1', 't=0 0',
    ...(refuseAudio ? [`m=audio 0 ${proto} 0`] : []),
    `m=video ${port} ${proto} ${pt}`, `a=rtpmap:${pt} ${rtpmap}`,
    ...(fmtp ? [`a=fmtp:${pt} ${fmtp}`] : []),
    ...(crypto ? [`a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:${crypto}${lifetime ? `|${lifetime}` : ''}`] : []),
    `a=${direction}`, ''].join('\r\n');
}

export const ENCODERS = {
  VP8: { rtpmap: 'VP8/90000', args: ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '500k'] },
  H264: { rtpmap: 'H264/90000', fmtp: 'packetization-mode=1',
    args: ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p'] },
};

/**
 * ffmpeg sends a `codec` test pattern (320x240, 30 fps, a keyframe each
 * second) to rkms's RTP `port` under payload type `pt`, SRTP with `crypto`,
 * from a fresh local port pair (so a new SSRC and sequence each time);
 * `pktSize` caps its RTP packets and `noise` makes frames big, for many
 * packets per frame. Returns the ffmpeg child and its local RTP port.
 */
export async function ffmpegSends({ port, pt, codec, crypto, seconds = 60, pktSize, noise }) {
  const local = await freePortPair();
  const enc = ENCODERS[codec];
  const scheme = crypto ? 'srtp' : 'rtp';
  const source = `testsrc=size=320x240:rate=30${noise ? ',noise=alls=80:allf=t' : ''}`;
  const ff = runFfmpeg(['-re', '-f', 'lavfi', '-i', source, '-t', String(seconds), '-an',
    ...enc.args, '-g', '30', '-f', 'rtp', '-payload_type', String(pt),
    ...(crypto ? ['-srtp_out_suite', 'AES_CM_128_HMAC_SHA1_80', '-srtp_out_params', crypto] : []),
    `${scheme}://127.0.0.1:${port}?rtcpport=${port + 1}&localrtpport=${local}&localrtcpport=${local + 1}${
      pktSize ? `&pkt_size=${pktSize}` : ''}`]);
  return { ff, local };
}

/**
 * ffmpeg sends a `codec` test pattern to the offer `rtp` generates (see
 * `ffmpegSends`), SRTP with `crypto` (announced with `lifetime`); rkms gets
 * ffmpeg's side as the answer. Returns the ffmpeg child, rkms's offer and its
 * video line.
 */
export async function ffmpegSendsTo(rtp, codec, { crypto, lifetime, seconds = 60, pktSize, noise } = {}) {
  const offer = await rtp.generateOffer();
  const video = mediaLine(offer, 'video');
  const pt = video.pt(codec);
  assert.ok(pt, `rkms offers ${codec}: ${offer}`);
  const { ff, local } = await ffmpegSends({ port: video.port, pt, codec, crypto, seconds, pktSize, noise });
  const enc = ENCODERS[codec];
  await rtp.processAnswer(peerSdp({ port: local, proto: crypto ? 'RTP/SAVP' : 'RTP/AVP', pt,
    rtpmap: enc.rtpmap, fmtp: enc.fmtp, direction: 'sendonly', crypto, lifetime, refuseAudio: true }));
  return { ff, offer, video };
}
