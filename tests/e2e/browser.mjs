// Headless Chromium as a real WebRTC peer: fake camera and microphone, a
// page served from loopback, and helpers to exchange SDP and candidates
// and to read what the page decoded.
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const PAGE = `<!doctype html><html><body>
<video id="remote" autoplay playsinline muted></video>
<script>
window.peer = {
  pc: null,
  candidates: [],
  gatheringDone: false,
  async start({ iceServers = [], iceTransportPolicy = 'all', video = true, audio = true, codec } = {}) {
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy });
    this.pc = pc;
    pc.onicecandidate = (e) => {
      if (e.candidate) this.candidates.push(e.candidate.toJSON());
      else this.gatheringDone = true;
    };
    pc.ontrack = (e) => {
      const v = document.getElementById('remote');
      if (!v.srcObject) v.srcObject = new MediaStream();
      v.srcObject.addTrack(e.track);
    };
    const stream = await navigator.mediaDevices.getUserMedia({ video, audio });
    // addTrack (not addTransceiver): its transceivers are reused when a
    // remote offer arrives, so the page sends whichever side offers.
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    this.codec = codec;
    this.preferCodec();
  },
  preferCodec() {
    if (!this.codec) return;
    for (const t of this.pc.getTransceivers()) {
      if (t.receiver.track.kind !== 'video') continue;
      const prefs = RTCRtpReceiver.getCapabilities('video').codecs
        .filter((c) => c.mimeType.toLowerCase() === 'video/' + this.codec.toLowerCase()
                     || /rtx|red|ulpfec/i.test(c.mimeType));
      t.setCodecPreferences(prefs);
    }
  },
  async createOffer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription.sdp;
  },
  async acceptAnswer(sdp) { await this.pc.setRemoteDescription({ type: 'answer', sdp }); },
  async acceptOffer(sdp) {
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    for (const t of this.pc.getTransceivers()) {
      if (t.sender.track) t.direction = 'sendrecv';
    }
    this.preferCodec();
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    return this.pc.localDescription.sdp;
  },
  async addCandidate(c) { await this.pc.addIceCandidate(c); },
  takeCandidates() { const c = this.candidates; this.candidates = []; return c; },
  async stats() {
    const out = { video: null, audio: null, connection: this.pc.connectionState,
                  ice: this.pc.iceConnectionState };
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        const codec = s.codecId && report.get(s.codecId);
        out.video = { framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived || 0,
                      frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
                      codec: codec ? codec.mimeType : null };
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audio = { packetsReceived: s.packetsReceived || 0 };
      }
    });
    const v = document.getElementById('remote');
    out.videoWidth = v.videoWidth;
    out.videoHeight = v.videoHeight;
    return out;
  },
};
</script></body></html>`;

/** Serves the peer page on a free loopback port (a secure context). */
function servePage() {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Starts Chromium with fake devices (playwright gives it a fresh profile);
 * returns { newPeer(), close() }. */
export async function launchBrowser({ extraArgs = [] } = {}) {
  const pageServer = await servePage();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
      ...extraArgs,
    ],
  });
  const url = `http://127.0.0.1:${pageServer.address().port}/`;
  return {
    async newPeer(options = {}) {
      const page = await browser.newPage();
      await page.goto(url);
      await page.evaluate((o) => window.peer.start(o), options);
      return new BrowserPeer(page);
    },
    async close() {
      await browser.close();
      pageServer.close();
    },
  };
}

export class BrowserPeer {
  constructor(page) { this.page = page; }
  createOffer() { return this.page.evaluate(() => window.peer.createOffer()); }
  acceptAnswer(sdp) { return this.page.evaluate((s) => window.peer.acceptAnswer(s), sdp); }
  acceptOffer(sdp) { return this.page.evaluate((s) => window.peer.acceptOffer(s), sdp); }
  addCandidate(c) { return this.page.evaluate((x) => window.peer.addCandidate(x), c); }
  takeCandidates() { return this.page.evaluate(() => window.peer.takeCandidates()); }
  stats() { return this.page.evaluate(() => window.peer.stats()); }

  /** Polls stats until `pred(stats)` holds; returns the last stats. */
  async waitFor(pred, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      last = await this.stats();
      if (pred(last)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`browser never reached the expected state; last stats ${JSON.stringify(last)}`);
  }
}
