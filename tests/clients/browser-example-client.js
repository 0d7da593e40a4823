#!/usr/bin/env node
// A client that plays a stream the way the original's browser example does: it sends the seed
// `render` message, collects the JSON chunks, and while the sound "plays" (from the first
// chunk on, at real time) it reports `{"type":"playback-position","position":S}` every 500 ms.
// Any `error` message fails it.
//
//   node browser-example-client.js <url> <genomeId> <duration> <out.f32>
//
// Writes the streamed samples as raw little-endian float32 and prints one JSON line:
// {"chunks":..,"positionsSent":..,"errors":[..]}.

'use strict';

const fs = require('fs');
const WebSocket = require('ws');

const [url, genomeId, duration, out] = process.argv.slice(2);
const ws = new WebSocket(url);
const chunks = [];
const errors = [];
let positionsSent = 0;
let playStart = null;
let ticker = null;

function finish(code) {
  if (ticker) clearInterval(ticker);
  ws.close();
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  fs.writeFileSync(out, Buffer.from(all.buffer));
  console.log(JSON.stringify({ chunks: chunks.length, positionsSent, errors }));
  process.exit(code);
}

ws.on('message', (data) => {
  const msg = JSON.parse(data.toString());
  switch (msg.type) {
    case 'welcome':
      ws.send(JSON.stringify({ type: 'render', genomeId, duration: Number(duration),
        noteDelta: 0, velocity: 0.5, useGPU: true }));
      break;
    case 'chunk':
      chunks.push(Float32Array.from(msg.data));
      if (playStart === null) {
        playStart = performance.now();
        ticker = setInterval(() => {
          const position = (performance.now() - playStart) / 1000;
          ws.send(JSON.stringify({ type: 'playback-position', position }));
          positionsSent++;
        }, 500);
      }
      break;
    case 'complete': {
      // Keep "playing" to the end of the sound, reporting the position as the example does,
      // so that messages sent after `complete` are checked too.
      const left = Number(duration) * 1000 - (performance.now() - playStart);
      setTimeout(() => finish(errors.length ? 1 : 0), Math.max(left, 0) + 300);
      break;
    }
    case 'error':
      errors.push(msg.message);
      break;
    default:
      break;
  }
});
ws.on('error', (e) => { errors.push(String(e)); finish(1); });
setTimeout(() => { errors.push('timed out'); finish(1); }, 120000);
