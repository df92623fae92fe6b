// The Kurento protocol, driven by the unmodified npm kurento-client 7.3.0
// and by raw JSON-RPC frames, against the real rkms binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startRkms, RawClient, sleep } from './helpers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

let server;
before(async () => { server = await startRkms(); });
after(async () => { await server.stop(); });

async function client() {
  return kurento(server.url, { failAfter: 3 });
}

test('health answers 200 and a plain GET on the WebSocket path is refused', async () => {
  const health = await fetch(`${server.httpBase}/health`);
  assert.equal(health.status, 200);
  const plain = await fetch(`${server.httpBase}/kurento`);
  assert.ok(plain.status >= 400, `status ${plain.status}`);
});

test('kurento-client connects and sees the three modules', async () => {
  const c = await client();
  const manager = await c.getServerManager();
  const info = await manager.getInfo();
  assert.deepEqual(info.modules.map((m) => m.name).sort(), ['core', 'elements', 'filters']);
  const core = info.modules.find((m) => m.name === 'core');
  assert.ok(core.factories.includes('MediaPipeline'));
  assert.ok(info.capabilities.includes('transactions'));
  assert.ok((await manager.getCpuCount()) >= 1);
  assert.ok((await manager.getUsedMemory()) > 0);
  const cpu = await manager.getUsedCpu(100);
  assert.ok(cpu >= 0 && cpu <= 100, `cpu ${cpu}`);
  const kmd = JSON.parse(await manager.getKmd('elements'));
  assert.ok(kmd.remoteClasses.some((k) => k.name === 'WebRtcEndpoint'));
  c.close();
});

test('pipelines and PassThrough elements: create, connect, names, tags, release', async () => {
  const c = await client();
  const pipeline = await c.create('MediaPipeline');
  assert.match(pipeline.id, /^[0-9a-f-]{36}_kurento\.MediaPipeline$/);
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  assert.ok(a.id.startsWith(`${pipeline.id}/`));
  assert.match(a.id, /_kurento\.PassThrough$/);

  assert.equal(await a.getName(), a.id, 'the default name is the id');
  await a.setName('left');
  assert.equal(await a.getName(), 'left');
  await a.addTag('room', 'blue');
  assert.equal(await a.getTag('room'), 'blue');
  assert.deepEqual((await a.getTags()).map((t) => [t.key, t.value]), [['room', 'blue']]);
  await a.removeTag('room');
  assert.deepEqual(await a.getTags(), []);

  assert.equal((await a.getMediaPipeline()).id, pipeline.id);
  assert.equal((await a.getParent()).id, pipeline.id);
  const children = (await pipeline.getChildren()).map((o) => o.id).sort();
  assert.deepEqual(children, [a.id, b.id].sort());
  const created = await a.getCreationTime();
  assert.ok(Math.abs(created - Date.now() / 1000) < 60, `creationTime ${created}`);

  await a.connect(b, 'VIDEO');
  const sinks = await a.getSinkConnections();
  assert.equal(sinks.length, 1);
  assert.equal(sinks[0].sink.id ?? sinks[0].sink, b.id);
  assert.equal(sinks[0].type, 'VIDEO');
  await a.connect(b);
  assert.equal((await b.getSourceConnections()).length, 3);
  assert.equal((await b.getSourceConnections('AUDIO')).length, 1);
  await a.disconnect(b, 'AUDIO');
  assert.equal((await b.getSourceConnections()).length, 2);
  const dot = await pipeline.getGstreamerDot();
  assert.match(dot, /^digraph/);
  assert.match(dot, /VIDEO/);

  const manager = await c.getServerManager();
  assert.ok((await manager.getPipelines()).some((p) => p.id === pipeline.id));
  await pipeline.release();
  assert.ok(!(await manager.getPipelines()).some((p) => p.id === pipeline.id));
  c.close();
});

test('a second client describes an object by id and sees its name', async () => {
  const c1 = await client();
  const c2 = await client();
  const pipeline = await c1.create('MediaPipeline');
  const pt = await pipeline.create('PassThrough');
  await pt.setName('shared');
  const seen = await c2.getMediaobjectById(pt.id);
  assert.equal(seen.constructor.name, 'PassThrough');
  assert.equal(await seen.getName(), 'shared');
  await pipeline.release();
  c1.close();
  c2.close();
});

test('events: ObjectCreated, ElementConnected, ElementDisconnected, ObjectDestroyed', async () => {
  const c = await client();
  const manager = await c.getServerManager();
  const created = [];
  const destroyed = [];
  manager.on('ObjectCreated', (e) => created.push(e.object.id ?? e.object));
  manager.on('ObjectDestroyed', (e) => destroyed.push(e.objectId));
  await sleep(100); // the client subscribes in the background
  const pipeline = await c.create('MediaPipeline');
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  const connected = [];
  const disconnected = [];
  a.on('ElementConnected', (e) => connected.push(e));
  a.on('ElementDisconnected', (e) => disconnected.push(e));
  await sleep(100);
  await a.connect(b, 'AUDIO');
  await a.disconnect(b, 'AUDIO');
  await a.connect(b, 'VIDEO');
  await pipeline.release();
  await sleep(300);
  assert.ok(created.includes(pipeline.id) && created.includes(a.id) && created.includes(b.id),
    `created ${created}`);
  assert.equal(connected.length, 2);
  assert.equal(connected[0].mediaType, 'AUDIO');
  assert.equal(connected[0].sink.id ?? connected[0].sink, b.id);
  assert.equal(connected[0].sourceMediaDescription, 'default');
  // One from disconnect, one from the release tearing VIDEO down.
  assert.deepEqual(disconnected.map((e) => e.mediaType), ['AUDIO', 'VIDEO']);
  assert.deepEqual([...destroyed].sort(), [pipeline.id, a.id, b.id].sort());
  c.close();
});

test('releasing a pipeline releases its children', async () => {
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  const child = await raw.call('create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline } });
  await raw.call('release', { object: pipeline });
  for (const id of [pipeline, child]) {
    const answer = await raw.request('invoke', { object: id, operation: 'getName' });
    assert.equal(answer.error?.code, 40101, JSON.stringify(answer));
  }
  await raw.close();
});

test('reconnecting with the session id keeps every object', async () => {
  const first = await RawClient.open(server.url);
  const pipeline = await first.call('create', { type: 'MediaPipeline' });
  await first.call('invoke', { object: pipeline, operation: 'setName', operationParams: { name: 'kept' } });
  const sessionId = first.sessionId;
  await first.close();

  const second = await RawClient.open(server.url);
  const answer = await second.request('connect', { sessionId });
  assert.equal(answer.result.sessionId, sessionId);
  second.sessionId = sessionId;
  assert.equal(await second.call('invoke', { object: pipeline, operation: 'getName' }), 'kept');
  await second.call('release', { object: pipeline });
  await second.close();
});

test('connect with an unknown session id is refused with 40007', async () => {
  const raw = await RawClient.open(server.url);
  const answer = await raw.request('connect', { sessionId: 'no-such-session' });
  assert.equal(answer.error.code, 40007);
  assert.equal(answer.error.data.type, 'INVALID_SESSION');
  await raw.close();
});

test('transaction: newref links operations; a bad reference is 40008', async () => {
  const raw = await RawClient.open(server.url);
  await raw.call('ping', { interval: 5000 });
  await raw.request('describe', { object: 'manager_ServerManager' });
  const ops = [
    { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline' } },
    { jsonrpc: '2.0', id: 1, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: 'newref:0' } } },
    { jsonrpc: '2.0', id: 2, method: 'invoke', params: { object: 'newref:1', operation: 'setName', operationParams: { name: 'tx' } } },
    { jsonrpc: '2.0', id: 3, method: 'release', params: { object: 'newref:7' } },
  ];
  const results = await raw.call('transaction', { operations: ops });
  assert.equal(results.length, 4);
  const pipeline = results[0].result.value;
  const element = results[1].result.value;
  assert.ok(element.startsWith(`${pipeline}/`));
  assert.ok(results[2].result);
  assert.equal(results[3].error.code, 40008);
  assert.equal(await raw.call('invoke', { object: element, operation: 'getName' }), 'tx');
  await raw.call('release', { object: pipeline });
  await raw.close();
});

test('a retried request id gets the same answer and does nothing twice', async () => {
  const raw = await RawClient.open(server.url);
  await raw.call('ping', {});
  const first = await raw.request('create', { type: 'MediaPipeline' }, { id: 500 });
  const again = await raw.request('create', { type: 'MediaPipeline' }, { id: 500 });
  assert.deepEqual(again, first);
  const pipelines = await raw.call('invoke', { object: 'manager_ServerManager', operation: 'getPipelines' });
  assert.equal(pipelines.filter((p) => p === first.result.value).length, 1);
  await raw.call('release', { object: first.result.value });
  await raw.close();
});

test('every error code, and the socket stays usable after each', async () => {
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  const pt = await raw.call('create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline } });

  const parse = await raw.sendRaw('{"jsonrpc":"2.0","id":', null);
  assert.equal(parse.error.code, -32700);
  assert.equal(await raw.call('ping', {}), 'pong');

  const cases = [
    [['frobnicate', {}], -32601],
    [['create', {}], -32602],
    [['invoke', { object: pt }], -32602],
    [['invoke', { object: 'nope', operation: 'getName' }], 40101],
    [['create', { type: 'NoSuchThing', constructorParams: {} }], 40100],
    [['create', { type: 'MediaElement', constructorParams: {} }], 40100],
    [['create', { type: 'PassThrough', constructorParams: { mediaPipeline: 'missing' } }], 40101],
    [['invoke', { object: pt, operation: 'fly' }], 40105],
    [['invoke', { object: pt, operation: 'setCreationTime', operationParams: { creationTime: 1 } }], 40105],
    [['invoke', { object: pt, operation: 'setName', operationParams: { name: 42 } }], 40107],
    [['invoke', { object: pt, operation: 'addTag', operationParams: { key: 'k' } }], 40107],
    [['invoke', { object: pt, operation: 'connect', operationParams: { sink: pt, mediaType: 'SMELL' } }], 40107],
    [['invoke', { object: pt, operation: 'connect', operationParams: { sink: pipeline } }], 40107],
    [['subscribe', { object: pt, type: 'IceCandidateFound' }], 40106],
    [['invoke', { object: pt, operation: 'getTag', operationParams: { key: 'absent' } }], 40110],
    [['release', { object: 'manager_ServerManager' }], 40111],
    [['create', { type: 'Composite', constructorParams: { mediaPipeline: pipeline } }], 40006],
    [['create', { type: 'kurento.HttpPostEndpoint', constructorParams: { mediaPipeline: pipeline } }], 40006],
  ];
  for (const [[method, params], code] of cases) {
    const answer = await raw.request(method, params);
    assert.equal(answer.error?.code, code, `${method} ${JSON.stringify(params)} -> ${JSON.stringify(answer)}`);
    assert.equal(typeof answer.error.data.type, 'string');
  }
  const missing = await raw.request('invoke', { object: pt, operation: 'addTag', operationParams: { key: 'k' } });
  assert.match(missing.error.message, /'value'/);
  const notImplemented = await raw.request('create', { type: 'Composite', constructorParams: { mediaPipeline: pipeline } });
  assert.match(notImplemented.error.message, /Composite/);

  assert.equal(await raw.call('invoke', { object: pt, operation: 'getName' }), pt);
  await raw.call('release', { object: pipeline });
  await raw.close();
});

test('garbage from one client does not disturb another session', async () => {
  const good = await RawClient.open(server.url);
  const pipeline = await good.call('create', { type: 'MediaPipeline' });
  const bad = await RawClient.open(server.url);
  const junk = ['', '[]', 'null', '{"method":1}', '{"id":{},"method":"create"}', '\u0000\u0001',
    '{"id":1,"method":"create","params":[1,2]}', '{"id":2,"method":"transaction","params":{"operations":[{"method":"transaction"}]}}',
    '{"id":3,"method":"invoke","params":{"object":"manager_ServerManager","operation":"getUsedCpu","operationParams":{"interval":-5}}}',
    JSON.stringify({ id: 4, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline.repeat(1000) } } })];
  for (const j of junk) bad.ws.send(j);
  bad.ws.send(Buffer.from([0xff, 0xfe, 0x00]));
  await sleep(300);
  assert.equal(await bad.call('ping', {}), 'pong');
  assert.equal(await good.call('invoke', { object: pipeline, operation: 'getName' }), pipeline);
  await good.call('release', { object: pipeline });
  await good.close();
  await bad.close();
});

test('sendTagsInEvents puts the source tags into its events', async () => {
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  const ctor = { mediaPipeline: pipeline };
  const a = await raw.call('create', { type: 'PassThrough', constructorParams: ctor });
  const b = await raw.call('create', { type: 'PassThrough', constructorParams: ctor });
  await raw.call('subscribe', { object: a, type: 'ElementConnected' });
  await raw.call('invoke', { object: a, operation: 'addTag', operationParams: { key: 'user', value: 'ana' } });
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'AUDIO' } });
  const plain = await raw.waitForEvent((e) => e.type === 'ElementConnected');
  assert.deepEqual(plain.data.tags, []);
  assert.equal(plain.object, a);
  assert.equal(plain.data.source, a);
  assert.equal(plain.data.sink, b);
  assert.match(plain.data.timestampMillis, /^\d+$/);

  await raw.call('invoke', { object: a, operation: 'setSendTagsInEvents', operationParams: { sendTagsInEvents: true } });
  raw.events.length = 0;
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'VIDEO' } });
  const tagged = await raw.waitForEvent((e) => e.type === 'ElementConnected');
  assert.deepEqual(tagged.data.tags, [{ __module__: 'kurento', __type__: 'Tag', key: 'user', value: 'ana' }]);
  await raw.call('release', { object: pipeline });
  await raw.close();
});

test('a client that stops reading its socket is disconnected; other sessions get every event; it reconnects to its session', async () => {
  const raw = await RawClient.open(server.url);
  const stuck = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  const ctor = { mediaPipeline: pipeline };
  const a = await raw.call('create', { type: 'PassThrough', constructorParams: ctor });
  const b = await raw.call('create', { type: 'PassThrough', constructorParams: ctor });
  // Large events fill the socket buffers, then the server's queue, in a few thousand.
  await raw.call('invoke', { object: a, operation: 'addTag', operationParams: { key: 'pad', value: 'x'.repeat(8192) } });
  await raw.call('invoke', { object: a, operation: 'setSendTagsInEvents', operationParams: { sendTagsInEvents: true } });
  for (const c of [raw, stuck]) await c.call('subscribe', { object: a, type: 'ElementConnected' });
  const { sessionId } = stuck;
  const closed = new Promise((r) => stuck.ws.once('close', r));
  stuck.ws._socket.pause();

  const told = () => server.stderr().includes('client stopped reading its socket');
  const params = { sink: b, mediaType: 'VIDEO' };
  let raised = 0;
  while (!told()) {
    assert.ok(raised < 12000, `the stuck connection is still open after ${raised} events`);
    await raw.call('invoke', { object: a, operation: 'connect', operationParams: params });
    await raw.call('invoke', { object: a, operation: 'disconnect', operationParams: params });
    raised++;
  }
  // An event is queued before the answer to the request that raised it.
  assert.equal(raw.events.filter((e) => e.type === 'ElementConnected').length, raised);

  stuck.ws._socket.resume();
  await closed;
  const back = await RawClient.open(server.url);
  const answer = await back.request('connect', { sessionId });
  assert.equal(answer.result?.sessionId, sessionId, JSON.stringify(answer));
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: params });
  await back.waitForEvent((e) => e.type === 'ElementConnected');
  await raw.call('release', { object: pipeline });
  await raw.close();
  await back.close();
});
