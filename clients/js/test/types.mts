// Compiled (not run) by `npm test` with tsc --strict, as an ES module importing the package by
// its name (the "import" condition: roomcast.d.mts): the declarations describe the surface.
import Roomcast, { Roomcast as Named, backoff, type Frame, type State } from "roomcast";

const rc: Roomcast = new Named("wss://push.example.com", {
  systemId: "app",
  token: async () => "jwt",
  recover: true,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  pingInterval: 20000,
  pongTimeout: 10000,
});
rc.on("connect", ({ clientId, recovered, missed }) => console.log(clientId.length, recovered, missed + 1));
rc.on("message", (f: Frame) => console.log(f.messageId, f.code, f.data));
rc.on("online", ({ clientId, userId, extend, frame }) => console.log(clientId, userId, extend, frame.msg));
rc.on("disconnect", ({ code, reason, willReconnect }) => console.log(code, reason, willReconnect));
rc.on("reset", ({ oldClientId, clientId }) => console.log(oldClientId, clientId));
rc.on("error", (e) => console.log(e.kind, e.code, e.message));
const s: State = rc.state;
const sent: boolean = rc.publish("g", { code: 1, msg: "m", data: { any: "json" } });
rc.connect().close();
console.log(s, sent, rc.clientId, backoff(0, 500, 20000));
// The browser's own WebSocket class fits the option.
new Roomcast("ws://h", { systemId: "s", WebSocket });
// @ts-expect-error: systemId is required
new Roomcast("ws://h", {});
// @ts-expect-error: no such event
rc.on("nope", () => {});
