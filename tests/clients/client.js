#!/usr/bin/env node
// Example Node.js client of kromosynth-render-socket, in the spirit of the original's
// `node src/test-client.js [genomeId] [duration]`.
//
//   node client.js <genomeId> [duration] [--url ws://127.0.0.1:8080] [--binary] [--out file.f32]
//
// Prints the time to the first chunk, the chunk count and the total samples; with --out, writes
// the received samples as raw little-endian float32 (what the server streamed, unnormalized).

'use strict';

const fs = require('fs');
const WebSocket = require('ws');

function parseArgs(argv) {
  const args = { url: 'ws://127.0.0.1:8080', binary: false, out: null, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--url') args.url = argv[++i];
    else if (a === '--out') args.out = argv[++i];
    else if (a === '--binary') args.binary = true;
    else args.positional.push(a);
  }
  args.genomeId = args.positional[0] || '01M88X7T6Y68CC64GC56PAT2JM';
  args.duration = Number(args.positional[1] || 5);
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const ws = new WebSocket(args.url);
  const chunks = [];
  let sentAt = 0;
  let firstChunkMs = null;
  let chunkCount = 0;

  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      // Header: u32 streamId, u32 chunk index, u64 sample offset (little-endian), then f32 LE.
      const buf = Buffer.from(data);
      const samples = new Float32Array(buf.buffer.slice(buf.byteOffset + 16, buf.byteOffset + buf.length));
      onChunk(samples);
      return;
    }
    const msg = JSON.parse(data.toString());
    switch (msg.type) {
      case 'welcome':
        console.log(`connected: ${msg.message} (${msg.sampleRate} Hz)`);
        sentAt = performance.now();
        ws.send(JSON.stringify({
          type: 'render',
          genomeId: args.genomeId,
          duration: args.duration,
          noteDelta: 0,
          velocity: 0.5,
          useGPU: true,
          ...(args.binary ? { format: 'binary' } : {}),
        }));
        break;
      case 'start':
        break;
      case 'chunk':
        onChunk(Float32Array.from(msg.data));
        break;
      case 'complete': {
        const totalMs = performance.now() - sentAt;
        const total = chunks.reduce((n, c) => n + c.length, 0);
        console.log(`first chunk after ${firstChunkMs.toFixed(1)} ms`);
        console.log(`complete after ${totalMs.toFixed(1)} ms: ${chunkCount} chunks, ${total} samples (${msg.totalSamples} announced), peak ${msg.peak}`);
        if (args.out) {
          const all = new Float32Array(total);
          let offset = 0;
          for (const c of chunks) { all.set(c, offset); offset += c.length; }
          fs.writeFileSync(args.out, Buffer.from(all.buffer));
          console.log(`wrote ${args.out}`);
        }
        ws.close();
        break;
      }
      case 'error':
        console.error(`server error: ${msg.message}`);
        process.exitCode = 1;
        ws.close();
        break;
      default:
        console.error(`unexpected message type ${msg.type}`);
    }
  });

  function onChunk(samples) {
    if (firstChunkMs === null) firstChunkMs = performance.now() - sentAt;
    chunkCount++;
    chunks.push(samples);
  }

  ws.on('error', (err) => {
    console.error(`connection error: ${err.message}`);
    process.exitCode = 1;
  });
}

main();
