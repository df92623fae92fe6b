// Sessions whose socket closed keep their objects for the garbage
// collector period, then lose them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRkms, RawClient, sleep } from './helpers.mjs';

let server;
before(async () => {
  server = await startRkms({ config: { mediaServer: { resources: { garbageCollectorPeriod: 1 } } } });
});
after(async () => { await server.stop(); });

test('after the GC period the session is invalid and its objects are released', async () => {
  const gone = await RawClient.open(server.url);
  const pipeline = await gone.call('create', { type: 'MediaPipeline' });
  const sessionId = gone.sessionId;
  await gone.close();

  const watcher = await RawClient.open(server.url);
  const listed = await watcher.call('invoke', { object: 'manager_ServerManager', operation: 'getPipelines' });
  assert.ok(listed.includes(pipeline), 'kept while the period runs');
  await sleep(2500);

  const after = await watcher.call('invoke', { object: 'manager_ServerManager', operation: 'getPipelines' });
  assert.ok(!after.includes(pipeline), 'released once the period is over');
  const answer = await watcher.request('connect', { sessionId });
  assert.equal(answer.error?.code, 40007);
  await watcher.close();
});

test('an object described by a live session survives the GC of its creator', async () => {
  const creator = await RawClient.open(server.url);
  const pipeline = await creator.call('create', { type: 'MediaPipeline' });
  const holder = await RawClient.open(server.url);
  await holder.call('describe', { object: pipeline });
  await creator.close();
  await sleep(2500);
  assert.equal(await holder.call('invoke', { object: pipeline, operation: 'getName' }), pipeline);
  await holder.call('release', { object: pipeline });
  await holder.close();
});
