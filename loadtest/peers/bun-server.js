// Reference server for the comparison: roomcast's HTTP API and WebSocket protocol on
// Bun.serve (uWebSockets inside), using Bun's native pub/sub for groups and systems.
// Frames are serialized once per message and published, as roomcast does.
// Usage: node_modules/.bin/bun bun-server.js [port]    (port 0: any; printed on stdout)
// TLS (https/wss on the same port, as roomcast's --tls-cert/--tls-key): TLS_CERT=cert.pem
// TLS_KEY=key.pem in the environment.
const port = Number(process.argv[2] ?? 7801);
const systems = new Set();
const clients = new Map(); // clientId -> ws
const groups = new Map();  // system + "\0" + group -> Set<clientId>
let seq = 0;
const hex16 = () => (crypto.getRandomValues(new BigUint64Array(1))[0]).toString(16).padStart(16, "0");
const ok = (data) => Response.json({ code: 0, msg: "success", data });
const err = (status, msg) => Response.json({ code: -1, msg, data: [] }, { status });
const push = (mid, from, code, msg, data) =>
  `{"messageId":"${mid}","sendUserId":${JSON.stringify(from ?? "")},"code":${code ?? 0},"msg":${JSON.stringify(msg ?? "")},"data":${JSON.stringify(data ?? "")}}`;
const notice = (code, ws) => {
  const d = JSON.stringify({ clientId: ws.data.id, extend: ws.data.extend, userId: ws.data.userId });
  return push(hex16(), code === 1001 ? ws.data.userId : "", code, code === 1001 ? "客户端上线" : "客户端下线", d);
};
const topic = (sys, g) => sys + "\0" + g;

const tls = process.env.TLS_CERT ? { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) } : undefined;

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  tls,
  async fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      const sys = url.searchParams.get("systemId") ?? req.headers.get("systemid");
      const id = (++seq).toString(16).padStart(28, "0");
      if (server.upgrade(req, { data: { id, sys, groups: new Set(), userId: "", extend: "" } })) return;
      return err(426, "upgrade required");
    }
    if (url.pathname === "/health") return Response.json({ status: "ok", connections: clients.size });
    if (!url.pathname.startsWith("/api/")) return err(404, "unknown route");
    if (req.method !== "POST") return err(405, "use POST");
    let b;
    try { b = await req.json(); } catch { return err(400, "invalid JSON body"); }
    const name = url.pathname.slice(5);
    if (name === "register") {
      if (systems.has(b.systemId)) return err(409, "already registered");
      systems.add(b.systemId);
      return ok([]);
    }
    const sys = req.headers.get("systemid");
    if (!systems.has(sys)) return err(404, "system not registered");
    const own = (id) => { const ws = clients.get(id); return ws && ws.data.sys === sys ? ws : null; };
    switch (name) {
      case "send_to_client": {
        const ws = own(b.clientId);
        if (!ws) return err(404, "client not found");
        const mid = hex16();
        ws.send(push(mid, b.sendUserId, b.code, b.msg, b.data));
        return ok({ messageId: mid });
      }
      case "send_to_clients": {
        const mid = hex16();
        const f = push(mid, b.sendUserId, b.code, b.msg, b.data);
        for (const id of b.clientIds ?? []) own(id)?.send(f);
        return ok({ messageId: mid });
      }
      case "send_to_group": {
        const mid = hex16();
        server.publish(topic(sys, b.groupName), push(mid, b.sendUserId, b.code, b.msg, b.data));
        return ok({ messageId: mid });
      }
      case "send_to_system": {
        const mid = hex16();
        server.publish(topic(sys, ""), push(mid, b.sendUserId, b.code, b.msg, b.data));
        return ok({ messageId: mid });
      }
      case "bind_to_group": {
        const ws = own(b.clientId);
        if (!ws) return err(404, "client not found");
        ws.data.userId = b.userId ?? ""; ws.data.extend = b.extend ?? "";
        if (ws.data.groups.has(b.groupName)) return ok([]);
        ws.data.groups.add(b.groupName);
        const t = topic(sys, b.groupName);
        if (!groups.has(t)) groups.set(t, new Set());
        groups.get(t).add(ws.data.id);
        ws.subscribe(t);
        if (b.notify !== false) server.publish(t, notice(1001, ws));
        return ok([]);
      }
      case "unbind_from_group": {
        const ws = own(b.clientId);
        if (!ws) return err(404, "client not found");
        const t = topic(sys, b.groupName);
        if (ws.data.groups.delete(b.groupName)) {
          ws.unsubscribe(t); groups.get(t)?.delete(ws.data.id);
          if (b.notify !== false) server.publish(t, notice(1002, ws));
        }
        return ok([]);
      }
      case "get_online_list": {
        const list = [...(groups.get(topic(sys, b.groupName)) ?? [])];
        return ok({ count: list.length, list });
      }
      case "close_client": {
        const ws = own(b.clientId);
        if (!ws) return err(404, "client not found");
        ws.close(1000, "closed by server");
        return ok([]);
      }
      default: return err(404, "unknown endpoint");
    }
  },
  websocket: {
    idleTimeout: 60,
    maxPayloadLength: 8192,
    sendPings: true,
    open(ws) {
      if (!systems.has(ws.data.sys)) {
        ws.send(`{"messageId":"","sendUserId":"","code":-1001,"msg":"systemId is required","data":[]}`);
        ws.close(1008, "refused");
        return;
      }
      clients.set(ws.data.id, ws);
      ws.subscribe(topic(ws.data.sys, ""));
      ws.send(`{"code":0,"msg":"success","data":{"clientId":"${ws.data.id}"}}`);
    },
    message(ws, m) {
      if (m === '{"cmd":"ping"}') ws.send('{"cmd":"pong"}');
    },
    close(ws) {
      if (!clients.delete(ws.data.id)) return;
      for (const g of ws.data.groups) {
        const t = topic(ws.data.sys, g);
        groups.get(t)?.delete(ws.data.id);
        server.publish(t, notice(1002, ws));
      }
    },
  },
});
console.log(`bun-peer listening on 127.0.0.1:${server.port}`);
