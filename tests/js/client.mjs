/**
 * A centrifuge-js client driven by tests/test_sdk_js.py, to prove the real JS SDK works
 * against hubbub.
 *
 * Input: a JSON scenario, as argv[2] or else as the first line of stdin:
 *   {
 *     "url": "ws://127.0.0.1:PORT/connection/websocket",
 *     "token": "...",                 // optional: connection JWT; absent = anonymous
 *     "tokenUrl": "http://...",       // optional: getToken fetches connection tokens here
 *     "subTokenUrl": "http://...",    // optional: subscription getToken, ?channel=C appended
 *     "channel": "chat:room",         // optional: subscribe to it on start
 *     "minReconnectDelay": 1500,      // optional, ms (SDK defaults otherwise)
 *     "maxReconnectDelay": 1500,      // optional, ms; min == max gives an exact delay
 *     "minResubscribeDelay": 100,     // optional, ms: the subscription's resubscribe backoff
 *     "maxResubscribeDelay": 1000,    // optional, ms
 *     "name": "js",                   // optional client name
 *     "data": {...},                  // optional connect data (e.g. for a connect proxy)
 *     "headers": {"Cookie": "..."},   // optional headers of the WebSocket upgrade request
 *     "protobuf": true,               // optional: the SDK's Protobuf build (centrifuge/build/protobuf);
 *                                     //   payloads are JSON bytes both ways, shown decoded
 *     "transports": [{"transport": "http_stream", "endpoint": "http://..."}],
 *                                     // optional: these transports instead of "url" (emulation)
 *     "emulationEndpoint": "http://.../emulation",   // optional, with "transports"
 *     "delta": "fossil",              // optional: the scenario's subscription asks for deltas
 *     "steps": [{"cmd": "..."}]       // optional commands run first, before stdin's
 *   }
 * then commands on stdin, one JSON object a line, run one at a time in order:
 *   {"cmd": "publish", "data": ...}          {"cmd": "presence"}
 *   {"cmd": "presence_stats"}                {"cmd": "history", "limit": 10}
 *   {"cmd": "rpc", "method": "m", "data": ...}
 *   {"cmd": "disconnect"}  {"cmd": "connect"}  {"cmd": "exit"}
 * Channel commands use "channel" if given, else the scenario's channel (through its
 * subscription, which makes the SDK wait until it is subscribed). A command may carry
 * an "id", echoed in its result.
 *
 * Output: one JSON object a line on stdout, each with an "event" field: the SDK's
 * events (connecting, connected, disconnected, error, subscribing, subscribed,
 * unsubscribed, publication, join, leave, sub_error) and one result per command,
 * named after it ({"event": "rpc", "data": ...}, or with "error": {code, message}
 * when the SDK rejected it). "exit" answers {"event": "exit"} and ends the process,
 * as does the end of stdin.
 */

import { createInterface } from 'node:readline';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';

// The SDK build the scenario asks for: JSON (default) or Protobuf.
let Centrifuge;
let protobuf = false;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** Outgoing payload: the Protobuf build sends bytes (our JSON's). */
function outgoing(data) {
  return protobuf ? textEncoder.encode(JSON.stringify(data)) : data;
}

/** Incoming payload: the Protobuf build hands bytes (JSON here), shown decoded. */
function incoming(data) {
  if (protobuf && data instanceof Uint8Array) {
    return data.length ? JSON.parse(textDecoder.decode(data)) : null;
  }
  return data;
}

function emit(event, fields = {}) {
  // Writes to a pipe are synchronous on Linux: nothing is lost when we exit.
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function errorFields(err) {
  if (err && typeof err === 'object' && 'code' in err) {
    return { code: err.code, message: err.message ?? '' };
  }
  return { code: -1, message: String(err) };
}

function clientInfo(info) {
  if (!info) return null;
  return {
    client: info.client,
    user: info.user,
    connInfo: incoming(info.connInfo) ?? null,
    chanInfo: incoming(info.chanInfo) ?? null,
  };
}

function publicationFields(ctx) {
  return {
    channel: ctx.channel,
    data: incoming(ctx.data),
    offset: ctx.offset ?? null,
    info: clientInfo(ctx.info),
    tags: ctx.tags ?? null,
  };
}

function exit(code) {
  process.exit(code);
}

process.on('uncaughtException', (err) => {
  emit('fatal', { message: String(err && err.stack ? err.stack : err) });
  exit(1);
});
process.on('unhandledRejection', (err) => {
  emit('fatal', { message: String(err && err.stack ? err.stack : err) });
  exit(1);
});

async function readScenario(lines) {
  if (process.argv[2]) return JSON.parse(process.argv[2]);
  const { value, done } = await lines.next();
  if (done) throw new Error('no scenario on stdin');
  return JSON.parse(value);
}

function createClient(scenario) {
  const options = { websocket: WebSocket, eventsource: EventSource, name: scenario.name ?? 'js' };
  if (scenario.emulationEndpoint) options.emulationEndpoint = scenario.emulationEndpoint;
  if (scenario.headers) {
    // What a browser sends by itself (cookies): Node's ws takes them as an option.
    const headers = scenario.headers;
    options.websocket = class extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols, { headers });
      }
    };
  }
  if (scenario.data !== undefined) options.data = outgoing(scenario.data);
  if (scenario.token) options.token = scenario.token;
  if (scenario.tokenUrl) {
    options.getToken = async () => {
      const token = await (await fetch(scenario.tokenUrl)).text();
      emit('token', { kind: 'connection' });
      return token;
    };
  }
  if (scenario.minReconnectDelay !== undefined) options.minReconnectDelay = scenario.minReconnectDelay;
  if (scenario.maxReconnectDelay !== undefined) options.maxReconnectDelay = scenario.maxReconnectDelay;
  const client = new Centrifuge(scenario.transports ?? scenario.url, options);
  client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) =>
    emit('connected', { client: ctx.client, transport: ctx.transport, data: incoming(ctx.data) ?? null }),
  );
  client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) => emit('error', { type: ctx.type, error: errorFields(ctx.error) }));
  client.on('publication', (ctx) => emit('server_publication', publicationFields(ctx)));
  return client;
}

function createSubscription(client, channel, scenario = {}) {
  const options = {};
  if (scenario.minResubscribeDelay !== undefined) options.minResubscribeDelay = scenario.minResubscribeDelay;
  if (scenario.maxResubscribeDelay !== undefined) options.maxResubscribeDelay = scenario.maxResubscribeDelay;
  if (scenario.delta) options.delta = scenario.delta;
  if (scenario.subTokenUrl) {
    options.getToken = async (ctx) => {
      const url = `${scenario.subTokenUrl}?channel=${encodeURIComponent(ctx.channel)}`;
      const token = await (await fetch(url)).text();
      emit('token', { kind: 'subscription', channel: ctx.channel });
      return token;
    };
  }
  const sub = client.newSubscription(channel, options);
  sub.on('subscribing', (ctx) =>
    emit('subscribing', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      channel: ctx.channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      streamPosition: ctx.streamPosition ?? null,
    }),
  );
  sub.on('unsubscribed', (ctx) =>
    emit('unsubscribed', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('publication', (ctx) => emit('publication', publicationFields(ctx)));
  sub.on('join', (ctx) => emit('join', { channel: ctx.channel, info: clientInfo(ctx.info) }));
  sub.on('leave', (ctx) => emit('leave', { channel: ctx.channel, info: clientInfo(ctx.info) }));
  sub.on('error', (ctx) => emit('sub_error', { channel: ctx.channel, type: ctx.type, error: errorFields(ctx.error) }));
  return sub;
}

/** Runs one command; resolves with the fields of its result event. */
async function execute(client, scenario, command) {
  const channel = command.channel ?? scenario.channel;
  const sub = channel ? client.getSubscription(channel) : null;
  const target = sub ?? client;
  const withChannel = sub ? [] : [channel];
  switch (command.cmd) {
    case 'publish':
      await target.publish(...withChannel, outgoing(command.data));
      return {};
    case 'presence': {
      const result = await target.presence(...withChannel);
      const clients = {};
      for (const [id, info] of Object.entries(result.clients)) clients[id] = clientInfo(info);
      return { clients };
    }
    case 'presence_stats': {
      const result = await target.presenceStats(...withChannel);
      return { numClients: result.numClients, numUsers: result.numUsers };
    }
    case 'history': {
      const options = { limit: command.limit ?? 0 };
      if (command.reverse) options.reverse = true;
      const result = await target.history(...withChannel, options);
      return {
        publications: result.publications.map(publicationFields),
        offset: result.offset,
        epoch: result.epoch,
      };
    }
    case 'rpc': {
      const result = await client.rpc(command.method, outgoing(command.data ?? null));
      return { data: incoming(result.data) ?? null };
    }
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

async function run(client, scenario, command) {
  if (command.cmd === 'exit') {
    client.disconnect();
    emit('exit', { id: command.id ?? null });
    exit(0);
  }
  const id = command.id ?? null;
  try {
    emit(command.cmd, { id, ...(await execute(client, scenario, command)) });
  } catch (err) {
    emit(command.cmd, { id, error: errorFields(err) });
  }
}

async function main() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const scenario = await readScenario(lines);
  protobuf = Boolean(scenario.protobuf);
  ({ Centrifuge } = await import(protobuf ? 'centrifuge/build/protobuf' : 'centrifuge'));
  const client = createClient(scenario);
  if (scenario.channel) createSubscription(client, scenario.channel, scenario).subscribe();
  client.connect();
  for (const command of scenario.steps ?? []) await run(client, scenario, command);
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    if (value.trim()) await run(client, scenario, JSON.parse(value));
  }
  // stdin closed: the driving test is gone.
  client.disconnect();
  exit(0);
}

main();
