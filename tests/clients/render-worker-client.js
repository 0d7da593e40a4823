#!/usr/bin/env node
// A client that asks for a render the way kromosynth-cli's evolution runs do
// (cli-app/service/websocket/ws-gene-evaluation.js): on open it sends one JSON message without
// `type` ({genomeString, duration, noteDelta, velocity, useGPU, antiAliasing,
// frequencyUpdatesApplyToAllPathcNetworkOutputs, sampleRate, sampleCountToActivate,
// sampleOffset}); the FIRST message is the answer: a Buffer is the samples as float32, anything
// else is a failure; it closes with 1000 and gives up after 120 s.
//
//   node render-worker-client.js <url> <genome.json> <duration> <noteDelta> <velocity> <sampleRate> <out.f32>

'use strict';

const fs = require('fs');
const WebSocket = require('ws');

const [url, genomePath, duration, noteDelta, velocity, sampleRate, out] = process.argv.slice(2);
const payload = {
  genomeString: fs.readFileSync(genomePath, 'utf8'),
  duration: Number(duration),
  noteDelta: Number(noteDelta),
  velocity: Number(velocity),
  useGPU: false,
  antiAliasing: false,
  frequencyUpdatesApplyToAllPathcNetworkOutputs: false,
  sampleRate: Number(sampleRate),
  sampleCountToActivate: undefined,
  sampleOffset: undefined,
};

new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  let timeout;
  ws.on('open', () => {
    ws.send(JSON.stringify(payload));
    timeout = setTimeout(() => reject(new Error('WebSocket request timed out')), 120000);
  });
  ws.on('message', (message) => {
    clearTimeout(timeout);
    ws.close(1000);
    if (message instanceof Buffer) {
      const buffer = new Uint8Array(message);
      resolve(new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4));
    } else {
      reject(new Error(String(message)));
    }
  });
  ws.on('error', (error) => { clearTimeout(timeout); reject(error); });
}).then((samples) => {
  fs.writeFileSync(out, Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
  console.log(`${samples.length} samples`);
  process.exit(0);
}, (error) => {
  console.error(`render failed: ${error.message}`);
  process.exit(1);
});
