// Broadcast server for the hubbub benchmark suite (Node + ws): every text message a
// client sends is sent to every other connected client, one send() per client.
// Usage: node server.js --port 9000 [--close-on-exit]   (listens on 127.0.0.1 only)
// SIGTERM exits at once (the kernel closes the sockets); with --close-on-exit it first
// sends every client a close frame (1001, going away) without waiting for the answers,
// as a server that tells its clients it stops does (hubbub sends Centrifugo's 3001).
"use strict";
const { WebSocketServer, WebSocket } = require("ws");

const portIndex = process.argv.indexOf("--port");
const port = portIndex > 0 ? Number(process.argv[portIndex + 1]) : 9000;
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
});
const closeOnExit = process.argv.includes("--close-on-exit");
process.on("SIGTERM", () => {
  if (closeOnExit) {
    for (const client of wss.clients) client.close(1001, "going away");
    setImmediate(() => process.exit(0)); // the frames are written, not their answers awaited
  } else {
    process.exit(0);
  }
});
