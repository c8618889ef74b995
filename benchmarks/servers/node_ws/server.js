// Broadcast server for the hubbub benchmark suite (Node + ws): every text message a
// client sends is sent to every other connected client, one send() per client.
// Usage: node server.js --port 9000   (listens on 127.0.0.1 only)
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
process.on("SIGTERM", () => process.exit(0));
