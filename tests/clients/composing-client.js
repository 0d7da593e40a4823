#!/usr/bin/env node
// A client that renders the way kromosynth's composing web app, Ableton bridge and
// recommendation service do against the newest original server: one WebSocket per render,
// binaryType 'arraybuffer', the genome inline, `batch: true`; the sample rate comes from the
// text `batch-result`, the FIRST binary frame is the whole sound, a text `error` rejects, and
// it gives up after 120 s. Only the `welcome` greeting is skipped, as those clients ignore
// messages of other types.
//
//   node composing-client.js <url> <genome.json> <duration> <noteDelta> <velocity> <out.f32>
//        [--wrap none|genome|data|string] [--request-id ID]
//
// Writes the received samples as raw little-endian float32 and prints one JSON line:
// {"sampleRate":..,"totalSamples":..,"messages":[types in order]}.

'use strict';

const fs = require('fs');
const WebSocket = require('ws');

function renderOnce(url, genome, duration, noteDelta, velocity, requestId) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const messages = [];
    let sampleRate = null;
    let totalSamples = null;
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error('timed out after 120 s'));
    }, 120000);
    ws.on('open', () => {
      ws.send(JSON.stringify({
        type: 'render', genome, duration, noteDelta, velocity,
        useGPU: true, batch: true, requestId,
      }));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        messages.push('binary');
        clearTimeout(timer);
        const samples = new Float32Array(data);
        ws.close();
        resolve({ samples, sampleRate, totalSamples, messages: messages.slice() });
        return;
      }
      const msg = JSON.parse(data.toString());
      messages.push(msg.type);
      if (msg.type === 'batch-result') {
        if (msg.requestId !== requestId) {
          reject(new Error(`batch-result for ${msg.requestId}, not ${requestId}`));
        }
        sampleRate = msg.sampleRate;
        totalSamples = msg.totalSamples;
      } else if (msg.type === 'error') {
        clearTimeout(timer);
        ws.close();
        reject(new Error(msg.message));
      }
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

async function main() {
  const argv = process.argv.slice(2);
  const [url, genomePath, duration, noteDelta, velocity, out] = argv;
  let wrap = 'none';
  let requestId = `composing-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  for (let i = 6; i < argv.length; i++) {
    if (argv[i] === '--wrap') wrap = argv[++i];
    else if (argv[i] === '--request-id') requestId = argv[++i];
  }
  const stored = JSON.parse(fs.readFileSync(genomePath, 'utf8'));
  let genome = stored.genome || stored;
  if (wrap === 'genome') genome = { genome: { genome } };
  else if (wrap === 'data') genome = { data: genome };
  else if (wrap === 'string') genome = JSON.stringify(genome);
  const result = await renderOnce(url, genome, Number(duration), Number(noteDelta),
    Number(velocity), requestId);
  if (result.samples.length !== result.totalSamples) {
    throw new Error(`binary frame has ${result.samples.length} samples, batch-result said ${result.totalSamples}`);
  }
  fs.writeFileSync(out, Buffer.from(result.samples.buffer));
  console.log(JSON.stringify({
    sampleRate: result.sampleRate, totalSamples: result.totalSamples, messages: result.messages,
  }));
}

main().catch((e) => { console.error(`render failed: ${e.message}`); process.exit(1); });
