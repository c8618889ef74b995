// A Node `ws` echo server for the audit's tests: node echo.mjs PORT
// No message size limit (the audit sends up to 16 MiB); permessage-deflate on.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const server = new WebSocketServer({ host: "127.0.0.1", port, maxPayload: 0, perMessageDeflate: true });
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});
server.on("listening", () => console.log("ready"));
