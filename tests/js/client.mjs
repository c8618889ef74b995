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
 *                                     //   payloads are JSON bytes both ways, shown decoded;
 *                                     //   publications and rpc results also carry "b64", their
 *                                     //   exact bytes, and "data" is null when they are not JSON
 *     "transports": [{"transport": "http_stream", "endpoint": "http://..."}],
 *                                     // optional: these transports instead of "url" (emulation)
 *     "emulationEndpoint": "http://.../emulation",   // optional, with "transports"
 *     "delta": "fossil",              // optional: the scenario's subscription asks for deltas
 *     "steps": [{"cmd": "..."}]       // optional commands run first, before stdin's
 *   }
 * then commands on stdin, one JSON object a line, run one at a time in order:
 *   {"cmd": "publish", "data": ...}          {"cmd": "presence"}
 *   {"cmd": "presence_stats"}                {"cmd": "history", "limit": 10}
 *   {"cmd": "rpc", "method": "m", "data": ...}   {"cmd": "send", "data": ...}
 *   (publish, rpc and send take "b64" instead of "data" with "protobuf": these exact bytes)
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
 *
 * The client and its commands are scenario.mjs's, shared with the browser page
 * (browser_client.html): this file adds what only Node needs (the ws and eventsource
 * packages, upgrade headers) and the stdin/stdout plumbing.
 */

import { createInterface } from 'node:readline';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { startScenario } from './scenario.mjs';

function emit(event, fields = {}) {
  // Writes to a pipe are synchronous on Linux: nothing is lost when we exit.
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
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

/** What Node lacks and a browser has: WebSocket and EventSource (and a browser's headers). */
function nodeOptions(scenario) {
  const options = { websocket: WebSocket, eventsource: EventSource };
  if (scenario.headers) {
    // What a browser sends by itself (cookies): Node's ws takes them as an option.
    const headers = scenario.headers;
    options.websocket = class extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols, { headers });
      }
    };
  }
  return options;
}

async function main() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const scenario = await readScenario(lines);
  const { Centrifuge } = await import(scenario.protobuf ? 'centrifuge/build/protobuf' : 'centrifuge');
  const { client, run } = startScenario({ Centrifuge, scenario, emit, options: nodeOptions(scenario) });
  async function step(command) {
    if (command.cmd === 'exit') {
      client.disconnect();
      emit('exit', { id: command.id ?? null });
      exit(0);
    }
    await run(command);
  }
  for (const command of scenario.steps ?? []) await step(command);
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    if (value.trim()) await step(JSON.parse(value));
  }
  // stdin closed: the driving test is gone.
  client.disconnect();
  exit(0);
}

main();
