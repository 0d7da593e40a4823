// A render worker in the original's manner, for timing it beside ours: a WebSocket server that
// takes kromosynth-cli's render request (one JSON message without `type`), renders it with
// the original kromosynth renderer at the requested sample rate (CPU), answers with channel 0
// of the normalized render as float32 and closes; at most 2 renders at a time, the rest wait,
// as the original worker process is configured. Our own harness: it only calls kromosynth's
// public module functions.
//
// Usage: node worker.mjs --port P      (workers.sh installs the packages and starts these)

import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const port = parseInt(args[args.indexOf('--port') + 1], 10);
const MAX_JOBS = 2;

const { getGenomeFromGenomeString } = await import('kromosynth/util/audio-synthesis-genome.js');
const { getAudioBufferFromGenomeAndMeta } = await import('kromosynth/util/audio-buffer.js');
const { OfflineAudioContext, AudioContext } = await import('node-web-audio-api');

// One realtime context per rate for the whole process, as a service keeps one.
const contexts = new Map();
const realtime = (rate) => {
  if (!contexts.has(rate)) {
    contexts.set(rate, new AudioContext({ sampleRate: rate, sinkId: { type: 'none' } }));
  }
  return contexts.get(rate);
};

let active = 0;
const waiting = [];

async function render(request) {
  const rate = request.sampleRate || 48000;
  const genome = await getGenomeFromGenomeString(request.genomeString);
  const ctx = new OfflineAudioContext({
    numberOfChannels: 2,
    length: Math.round(rate * request.duration),
    sampleRate: rate,
  });
  return getAudioBufferFromGenomeAndMeta(
    { genome }, request.duration, request.noteDelta, request.velocity,
    false, // reverse
    true, // asDataArray: channel 0, normalized
    ctx, realtime(rate),
    false, // useOvertoneInharmonicityFactors
    false, // useGPU
    request.antiAliasing || false,
    request.frequencyUpdatesApplyToAllPathcNetworkOutputs || false,
  );
}

function next() {
  while (active < MAX_JOBS && waiting.length) {
    const { ws, request } = waiting.shift();
    active++;
    const start = performance.now();
    render(request).then((samples) => {
      ws.send(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
      ws.close();
      process.stderr.write(`rendered in ${(performance.now() - start).toFixed(1)} ms\n`);
    }, (e) => {
      ws.send(JSON.stringify({ error: String(e) }));
    }).finally(() => { active--; next(); });
  }
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 100 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    waiting.push({ ws, request: JSON.parse(data.toString()) });
    next();
  });
});
wss.on('listening', () => console.log(`worker listening on ws://127.0.0.1:${port}`));
