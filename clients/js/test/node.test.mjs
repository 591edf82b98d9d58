// The client in Node, with the ws package as its WebSocket, against a real server through the
// fault-injecting proxy (scenarios.mjs).
import { test } from "node:test";
import WebSocket from "ws";
import Roomcast from "../src/roomcast.mjs";
import { connectToken, installRecorder } from "./harness.mjs";
import { scenarios } from "./scenarios.mjs";

function nodeDriver() {
  const g = {};
  installRecorder(g, Roomcast, WebSocket, async (claims) => connectToken(claims));
  return {
    open: async (name, url, opts) => g.__rc.open(name, url, opts),
    events: async (name) => g.__rc.events(name),
    call: async (name, method, args) => g.__rc.call(name, method, args),
    prop: async (name, key) => g.__rc.prop(name, key),
    dispose: async () => g.__rc.closeAll(),
  };
}

scenarios(test, "node (ws)", async () => nodeDriver());
