// Node + ws servers for the hubbub benchmarks; listens on 127.0.0.1 only, on any path.
// Usage: node server.js --port 9000 [--close-on-exit]                # broadcast
//        node server.js --port 9000 --centrifugo [--close-on-exit]   # Centrifugo's JSON protocol
// Broadcast: every message a client sends goes to every other connected client, one
// send() per client.
// --centrifugo: the least of Centrifugo's JSON client protocol (v2) a storm or fan-out
// client needs, done as a real server does it, so that a comparison with hubbub has
// Node do the same work per client: each message is one or more '\n'-separated JSON
// commands; connect is answered with a client id, subscribe puts the connection in
// its channel's set, publish pushes the data (encoded once) to that channel's
// subscribers, an empty command (a pong) is not answered, any other command with an id
// gets error 100 (unsupported). All the replies to one message go out in one send(),
// '\n'-joined (as Centrifugo and hubbub write them). What Centrifugo answers with a
// disconnect closes the connection with 3501 (bad request): a line that is not a JSON
// object, connect/subscribe/publish without an id, a command before connect or a
// second connect, no channel, a publish without data. No pings are sent.
// SIGTERM exits at once (the kernel closes the sockets); with --close-on-exit it first
// sends every client a close frame without waiting for the answers, as a server that
// tells its clients it stops does: 1001 (going away), or with --centrifugo
// Centrifugo's 3001 (shutdown), which hubbub sends.
"use strict";
const crypto = require("crypto");
const { WebSocketServer, WebSocket } = require("ws");

const portIndex = process.argv.indexOf("--port");
const port = portIndex > 0 ? Number(process.argv[portIndex + 1]) : 9000;
const centrifugo = process.argv.includes("--centrifugo");
const closeOnExit = process.argv.includes("--close-on-exit");
// No `path` option: ws then upgrades a request for any path (/connection/websocket too).
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

function broadcast(ws) {
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
}

// --centrifugo: the subscribers of each channel; a connection leaves them all on close.
const channels = new Map(); // channel -> Set of connections
const VERSION = "0.0.0";
const PING = 25; // s: the interval announced in the connect reply

function subscribe(ws, subscribed, channel) {
  let members = channels.get(channel);
  if (members === undefined) channels.set(channel, (members = new Set()));
  members.add(ws);
  subscribed.add(channel);
}

function publish(channel, data) {
  const members = channels.get(channel);
  if (members === undefined) return;
  const push = `{"push":{"channel":${JSON.stringify(channel)},"pub":{"data":${JSON.stringify(data)}}}}`;
  for (const client of members) {
    if (client.readyState === WebSocket.OPEN) client.send(push); // encoded once for all
  }
}

// Thrown for what Centrifugo answers by closing the connection with 3501 (bad request).
class BadRequest extends Error {}

function channelOf(params) {
  if (params === null || typeof params !== "object") throw new BadRequest("no params");
  const channel = params.channel;
  if (typeof channel !== "string" || channel === "") throw new BadRequest("no channel");
  return channel;
}

// The reply to one command (a JSON string), or null when it gets none.
function answer(ws, state, command) {
  const id = command.id;
  const method = ["connect", "subscribe", "publish"].find((m) => command[m] !== undefined);
  if (method === undefined) {
    // A pong ({}) or a send, which want no reply; another command this server lacks.
    return id === undefined ? null : JSON.stringify({ id, error: { code: 100, message: "unsupported" } });
  }
  if (!(Number.isInteger(id) && id > 0)) throw new BadRequest(`${method} without id`);
  if ((method === "connect") === state.connected) throw new BadRequest("connect twice or missing");
  if (method === "connect") {
    state.connected = true;
    const result = { client: crypto.randomUUID(), version: VERSION, ping: PING, pong: true };
    return JSON.stringify({ id, connect: result });
  }
  if (method === "subscribe") {
    subscribe(ws, state.subscribed, channelOf(command.subscribe));
    return JSON.stringify({ id, subscribe: {} });
  }
  const channel = channelOf(command.publish);
  if (command.publish.data === undefined) throw new BadRequest("publish without data");
  publish(channel, command.publish.data);
  return JSON.stringify({ id, publish: {} });
}

function speakCentrifugo(ws) {
  const state = { connected: false, subscribed: new Set() }; // this connection's
  ws.on("message", (data) => {
    const replies = [];
    try {
      for (const line of data.toString().split("\n")) {
        if (line === "") continue;
        const command = JSON.parse(line); // a SyntaxError: bad request too
        if (command === null || typeof command !== "object" || Array.isArray(command)) {
          throw new BadRequest("not a JSON object");
        }
        const reply = answer(ws, state, command);
        if (reply !== null) replies.push(reply);
      }
    } catch (error) {
      if (!(error instanceof BadRequest || error instanceof SyntaxError)) throw error;
      ws.close(3501, "bad request"); // the replies so far are dropped with the connection
      return;
    }
    if (replies.length > 0) ws.send(replies.join("\n"));
  });
  ws.on("close", () => {
    for (const channel of state.subscribed) {
      const members = channels.get(channel);
      members.delete(ws);
      if (members.size === 0) channels.delete(channel);
    }
  });
}

wss.on("connection", centrifugo ? speakCentrifugo : broadcast);

process.on("SIGTERM", () => {
  if (closeOnExit) {
    const [code, reason] = centrifugo ? [3001, "shutdown"] : [1001, "going away"];
    for (const client of wss.clients) client.close(code, reason);
    setImmediate(() => process.exit(0)); // the frames are written, not their answers awaited
  } else {
    process.exit(0);
  }
});
