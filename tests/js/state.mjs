/**
 * A centrifuge-js client with map and shared poll subscriptions, driven by the
 * state-synchronisation tests (tests/test_maps_js.py, tests/test_polls.py).
 *
 * Input: a JSON scenario as argv[2]:
 *   {"url": "ws://...", "token": "...", "name": "js", "data": {...} (connect data),
 *    "protobuf": true (the SDK's Protobuf build; payloads JSON bytes),
 *    "minReconnectDelay": 500, "maxReconnectDelay": 500}
 * then commands on stdin, one JSON object a line, run in order (an "id" is echoed):
 *   {"cmd": "map", "channel": C, "kind": "map"|"clients"|"users",
 *    "pageSize": N, "delta": "fossil", "strategy": "from_scratch"}  subscribe a map
 *   {"cmd": "poll", "channel": C, "signUrl": URL, "delta": "fossil"}  shared poll
 *   {"cmd": "track", "channel": C, "keys": [...]}          (signatures from signUrl)
 *   {"cmd": "track_signed", "channel": C, "items": [{key, version}], "signature": S}
 *   {"cmd": "untrack", "channel": C, "keys": [...]}
 *   {"cmd": "publish", "channel": C, "key": K, "data": D}   MapSubscription.publish
 *   {"cmd": "remove", "channel": C, "key": K}
 *   {"cmd": "state", "channel": C}     the entries this client holds: {key: data}
 *   {"cmd": "delta_stats", "channel": C}   the SDK's deltaStats() of the subscription
 *   {"cmd": "unsubscribe", "channel": C}   {"cmd": "disconnect"}  {"cmd": "connect"}
 *   {"cmd": "exit"}
 *
 * Output: one JSON object a line, each with an "event" field: connected,
 * disconnected, subscribing, subscribed, unsubscribed, sync {channel, count},
 * update {channel, key, data, removed, version}, sub_error, and one result per
 * command (with "error" when it failed). The client keeps each map's entries as
 * the SDK's sync and update events describe them, which "state" returns.
 */

import WebSocket from 'ws';
import { createInterface } from 'node:readline';

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function errorFields(err) {
  if (err && typeof err === 'object' && 'code' in err) {
    return { code: err.code, message: err.message ?? '' };
  }
  return { code: -1, message: String(err) };
}

process.on('uncaughtException', (err) => {
  emit('fatal', { message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  emit('fatal', { message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});

const scenario = JSON.parse(process.argv[2]);
const protobuf = Boolean(scenario.protobuf);
const { Centrifuge } = await import(protobuf ? 'centrifuge/build/protobuf' : 'centrifuge');
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
// Payloads are JSON to the tests: the Protobuf build carries them as bytes.
const out = (data) => (protobuf ? textEncoder.encode(JSON.stringify(data)) : data);
const back = (data) =>
  protobuf && data instanceof Uint8Array ? (data.length ? JSON.parse(textDecoder.decode(data)) : null) : data;
const options = { websocket: WebSocket, name: scenario.name ?? 'js' };
if (scenario.token) options.token = scenario.token;
if (scenario.data !== undefined) options.data = out(scenario.data);
if (scenario.minReconnectDelay !== undefined) options.minReconnectDelay = scenario.minReconnectDelay;
if (scenario.maxReconnectDelay !== undefined) options.maxReconnectDelay = scenario.maxReconnectDelay;
const client = new Centrifuge(scenario.url, options);
client.on('connected', (ctx) => emit('connected', { client: ctx.client }));
client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));

const states = new Map(); // channel -> Map(key -> data)

function watch(sub, channel) {
  const entries = new Map();
  states.set(channel, entries);
  sub.on('subscribing', (ctx) => emit('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      channel,
      recoverable: ctx.recoverable,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      state: ctx.state ? ctx.state.length : null,
    }),
  );
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { channel, type: ctx.type, error: errorFields(ctx.error) }));
  sub.on('sync', (ctx) => {
    entries.clear();
    for (const entry of ctx.entries) entries.set(entry.key, back(entry.data));
    emit('sync', { channel, count: ctx.entries.length });
  });
  sub.on('update', (ctx) => {
    if (ctx.removed) entries.delete(ctx.key);
    else entries.set(ctx.key, back(ctx.data));
    emit('update', {
      channel,
      key: ctx.key,
      data: back(ctx.data) ?? null,
      removed: !!ctx.removed,
      version: ctx.version ?? null,
      offset: ctx.offset ?? null,
    });
  });
}

function mapSubscription(command) {
  const opts = {};
  if (command.pageSize) opts.pageSize = command.pageSize;
  if (command.delta) opts.delta = command.delta;
  if (command.strategy) opts.unrecoverableStrategy = command.strategy;
  const kind = command.kind ?? 'map';
  const factory =
    kind === 'clients' ? 'newMapClientsSubscription' : kind === 'users' ? 'newMapUsersSubscription' : 'newMapSubscription';
  const sub = client[factory](command.channel, opts);
  watch(sub, command.channel);
  sub.subscribe();
  return sub;
}

function pollSubscription(command) {
  const opts = {};
  if (command.delta) opts.delta = command.delta;
  if (command.signUrl) {
    opts.getSignature = async (ctx) => {
      const response = await fetch(command.signUrl, {
        method: 'POST',
        body: JSON.stringify({ channel: command.channel, keys: ctx.keys }),
      });
      if (!response.ok) throw new Error(`sign: HTTP ${response.status}`);
      const signed = await response.json();
      emit('signed', { channel: command.channel, keys: signed.keys });
      return signed;
    };
  }
  const sub = client.newSharedPollSubscription(command.channel, opts);
  watch(sub, command.channel);
  sub.subscribe();
  return sub;
}

async function execute(command) {
  const sub = command.channel ? client.getSubscription(command.channel) : null;
  switch (command.cmd) {
    case 'map':
      mapSubscription(command);
      return {};
    case 'poll':
      pollSubscription(command);
      return {};
    case 'track':
      sub.track(command.keys);
      return {};
    case 'track_signed':
      sub.track(command.items, command.signature);
      return {};
    case 'untrack':
      sub.untrack(command.keys);
      return {};
    case 'publish':
      await sub.publish(command.key, out(command.data));
      return {};
    case 'remove':
      await sub.remove(command.key);
      return {};
    case 'state': {
      const entries = states.get(command.channel) ?? new Map();
      return { entries: Object.fromEntries(entries), tracked: sub && sub.trackedKeys ? [...sub.trackedKeys()] : null };
    }
    case 'unsubscribe':
      sub.unsubscribe();
      return {};
    case 'delta_stats':
      return { stats: sub.deltaStats() };
    case 'disconnect':
      client.disconnect();
      return {};
    case 'connect':
      client.connect();
      return {};
    default:
      throw { code: -1, message: `unknown command ${JSON.stringify(command.cmd)}` };
  }
}

async function main() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  client.connect();
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    if (!value.trim()) continue;
    const command = JSON.parse(value);
    if (command.cmd === 'exit') {
      client.disconnect();
      emit('exit', { id: command.id ?? null });
      process.exit(0);
    }
    const id = command.id ?? null;
    try {
      emit(command.cmd, { id, ...(await execute(command)) });
    } catch (err) {
      emit(command.cmd, { id, error: errorFields(err) });
    }
  }
  client.disconnect();
  process.exit(0);
}

main();
