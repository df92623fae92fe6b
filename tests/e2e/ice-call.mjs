// A hello-world call (the browser's camera looped back through a WebRtcEndpoint) where the
// test decides which of rkms's candidates reach the browser: the ICE tests use it to leave the
// browser exactly one way to rkms and check that media takes it.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { sleep } from './helpers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

export const typeOf = (candidate) => / typ (\w+)/.exec(candidate)?.[1];
export const transportOf = (candidate) => candidate.split(' ')[2]?.toLowerCase();

/** `sdp` without the `a=candidate` lines `keep` refuses. */
function onlyCandidates(sdp, keep) {
  return sdp.split('\r\n')
    .filter((line) => !line.startsWith('a=candidate:') || keep(line.slice(2)))
    .join('\r\n');
}

/** The browser's selected candidate pair, as its own getStats() tells. */
export function selectedPair(peer) {
  return peer.page.evaluate(async () => {
    const report = await window.peer.pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const side = (id) => {
      const c = report.get(id);
      return { protocol: c.protocol, type: c.candidateType, tcpType: c.tcpType, address: c.address, port: c.port };
    };
    return { local: side(pair.localCandidateId), remote: side(pair.remoteCandidateId) };
  });
}

/** Runs the call on `server` until the browser decodes its own camera; rkms's candidates reach
 * the browser (trickled or in the answer) only if `keep(candidate)`, the browser's reach rkms
 * only if `keepRemote`. `properties` are set on the endpoint before it gathers
 * (`{ stunServerAddress: ... }` calls `setStunServerAddress`); `inspect({ peer, endpoint,
 * announced })` runs while media flows. Resolves with what rkms announced, how many candidates came before
 * IceGatheringDone, the pairs rkms selected and the browser's last video stats. */
export async function helloWorld(browser, server, {
  keep = () => true, keepRemote = () => true, peerOptions = {}, properties = {},
  inspect = async () => {},
} = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  for (const [name, value] of Object.entries(properties)) {
    await endpoint[`set${name[0].toUpperCase()}${name.slice(1)}`](value);
  }
  const peer = await browser.newPeer(peerOptions);
  const announced = [];
  const pairs = [];
  // Candidates that come before the browser has the answer wait for it (it would refuse them).
  let toBrowser = [];
  endpoint.on('IceCandidateFound', (ev) => {
    announced.push(ev.candidate.candidate);
    if (!keep(ev.candidate.candidate)) return;
    const c = { candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex };
    if (toBrowser) toBrowser.push(c);
    else peer.addCandidate(c).catch(() => {});
  });
  endpoint.on('NewCandidatePairSelected', (ev) => pairs.push(ev.candidatePair));
  let gatheringDone = null;
  endpoint.on('IceGatheringDone', () => { gatheringDone = announced.length; });
  const answer = onlyCandidates(await endpoint.processOffer(
    onlyCandidates(await peer.createOffer(), keepRemote)), keep);
  await endpoint.gatherCandidates();
  await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  for (const c of toBrowser) await peer.addCandidate(c);
  toBrowser = null;
  const IceCandidate = kurento.getComplexType('IceCandidate');
  const state = { done: false };
  const trickling = (async () => {
    while (!state.done) {
      // The page may be gone (a test closes it mid-call).
      for (const c of await peer.takeCandidates().catch(() => [])) {
        if (keepRemote(c.candidate)) await endpoint.addIceCandidate(IceCandidate(c));
      }
      await sleep(100);
    }
  })();
  try {
    const first = await peer.waitFor((s) => s.video?.framesDecoded > 30 && s.audio?.packetsReceived > 20);
    await sleep(700);
    const later = await peer.stats();
    assert.ok(later.video.framesDecoded > first.video.framesDecoded, 'video keeps flowing');
    const deadline = Date.now() + 10000;
    while (gatheringDone === null && Date.now() < deadline) await sleep(100);
    await inspect({ peer, endpoint, announced });
    return { announced, gatheringDone, pairs, video: later.video };
  } finally {
    state.done = true;
    await trickling;
    await pipeline.release();
    client.close();
  }
}
