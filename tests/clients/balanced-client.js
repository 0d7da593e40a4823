// Many clients through a balancer: each renders its share of requests, on one connection while
// that connection lasts, and starts a request over on a new connection whenever it fails (a
// refused connect, a dropped connection, an `error` from a draining or busy instance). Prints
// one JSON line per finished request (FNV-1a of its samples' f32 bytes, sample count, tries),
// then exits 0 only if every request finished.
//
//   node balanced-client.js <wss://url> <clients> <requests per client> <requests JSON array>
'use strict';
const WebSocket = require('ws');

const [url, clientCount, perClient, requestsJson] = process.argv.slice(2);
const requests = JSON.parse(requestsJson);
const MAX_TRIES = 50;

function fnv1a(buffers) {
  let h = 0x811c9dc5;
  for (const b of buffers) {
    for (let i = 0; i < b.length; i++) {
      h ^= b[i];
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

// Resolves with the outcome of every request of one client, in order.
function runClient(client) {
  return new Promise((resolve) => {
    const results = [];
    let next = 0;
    let tries = 0;
    let ws = null;
    let current = null;

    const retry = (why) => {
      if (current === null) return;
      current = null;
      tries += 1;
      if (ws) {
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        ws = null;
      }
      if (tries >= MAX_TRIES) {
        results.push({ client, request: next, ok: false, why });
        resolve(results);
        return;
      }
      setTimeout(connect, 20 + Math.random() * 80);
    };

    const send = () => {
      if (next >= Number(perClient)) {
        current = null;
        ws.close();
        resolve(results);
        return;
      }
      const index = (client * Number(perClient) + next) % requests.length;
      current = { index, chunks: [], total: null };
      const msg = Object.assign({}, requests[index], {
        type: 'render', format: 'binary', requestId: `c${client}r${next}`,
      });
      ws.send(JSON.stringify(msg));
    };

    function connect() {
      current = { index: null, chunks: [], total: null };
      ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
      ws.on('message', (data, isBinary) => {
        if (current === null) return;
        if (isBinary) {
          current.chunks.push(data.subarray(16));
          return;
        }
        const m = JSON.parse(data.toString());
        if (m.type === 'welcome') {
          send();
        } else if (m.type === 'start') {
          current.total = m.totalSamples;
        } else if (m.type === 'complete') {
          const samples = current.chunks.reduce((n, c) => n + c.length / 4, 0);
          results.push({
            client, request: next, index: current.index, ok: true, tries,
            samples, total: m.totalSamples, hash: fnv1a(current.chunks),
          });
          next += 1;
          tries = 0;
          send();
        } else if (m.type === 'error') {
          retry(`error: ${m.message}`);
        }
      });
      ws.on('close', (code) => retry(`closed ${code}`));
      ws.on('error', (e) => retry(`socket: ${e.message}`));
    }

    connect();
  });
}

(async () => {
  const all = await Promise.all(
    Array.from({ length: Number(clientCount) }, (_, c) => runClient(c)));
  let failed = 0;
  for (const results of all) {
    for (const r of results) {
      if (!r.ok) failed += 1;
      console.log(JSON.stringify(r));
    }
  }
  process.exit(failed === 0 ? 0 : 1);
})();
