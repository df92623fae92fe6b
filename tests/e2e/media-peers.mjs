// Wiring a headless Chromium page to a WebRtcEndpoint through the npm
// kurento-client, as Kurento's tutorials do (the page offers, candidates
// trickle both ways), and the ffprobe/ffmpeg checks of recorded files.
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { sleep } from './helpers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

/** Connects a new browser page to a new WebRtcEndpoint of `pipeline`.
 * `codec` restricts the page's video to one codec. Resolves once the
 * endpoint has answered; candidates keep trickling for 10 s. */
export async function connectPage(browser, pipeline, { codec } = {}) {
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer({ codec });
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  const answer = await endpoint.processOffer(await peer.createOffer());
  await endpoint.gatherCandidates();
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  const until = Date.now() + 10000;
  (async () => {
    while (Date.now() < until) {
      for (const c of await peer.takeCandidates()) {
        await endpoint.addIceCandidate(IceCandidate(c)).catch(() => {});
      }
      await sleep(100);
    }
  })().catch(() => {});
  return { endpoint, peer };
}

/** Polls until `element` reports `kind` media flowing in. */
export async function flowingIn(element, kind = 'VIDEO', timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await element.isMediaFlowingIn(kind))) {
    if (Date.now() > deadline) throw new Error(`no ${kind} flowing in within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Resolves with the first `name` event of `object` that satisfies `pred`. */
export function nextEvent(object, name, pred = () => true, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} event within ${timeoutMs} ms`)), timeoutMs);
    object.on(name, (e) => {
      if (pred(e)) {
        clearTimeout(timer);
        resolve(e);
      }
    });
  });
}

/** ffprobe's view of a file: { streams: [{codec_type, codec_name}],
 * duration (the container's), span (first packet to the end of the last) }. */
export function probe(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries',
    'stream=codec_type,codec_name:format=duration:packet=pts_time,duration_time',
    '-of', 'json', file], { maxBuffer: 64 << 20 }).toString();
  const json = JSON.parse(out);
  const packets = (json.packets || []).filter((p) => p.pts_time !== undefined);
  const start = Math.min(...packets.map((p) => Number(p.pts_time)));
  const end = Math.max(...packets.map((p) => Number(p.pts_time) + Number(p.duration_time || 0)));
  return { streams: json.streams, duration: Number(json.format?.duration), span: end - start };
}

/** What a full decode of the file complains about ('' when nothing).
 * `-enc_time_base -1` keeps the file's own time base: a browser's camera
 * has a variable frame rate (frames a few ms apart under load), which
 * ffmpeg 5.1 would otherwise squeeze onto its guessed constant rate and
 * report as non-monotonic timestamps of its own making. */
export function decodeErrors(file) {
  const run = spawnSync('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-enc_time_base', '-1', '-f', 'null', '-']);
  if (run.error) throw run.error;
  return `${run.stdout}${run.stderr}`.trim();
}

export { kurento };
