// Times the original kromosynth batch renderer on the fixture genomes and requests.
//
// Usage: node render.mjs [--repeat N] [--genomes ID,ID]   (run.sh installs the packages)
// Prints one JSON document on stdout; progress goes to stderr.
//
// Our own harness: it only calls kromosynth's public module functions
// (getGenomeFromGenomeString, getAudioBufferFromGenomeAndMeta) the way the fixture generator
// describes (tests/fixtures/reference/README.md): useGPU=false, a 2-channel 48 kHz
// OfflineAudioContext from node-web-audio-api, channel 0 as the mono output.

import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, '../../tests/fixtures/reference');
const SAMPLE_RATE = 48000;
// The four fixture requests: [noteDelta, velocity, duration].
const REQUESTS = [[0, 1, 1], [0, 1, 4], [12, 0.5, 1], [12, 0.5, 4]];

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const repeat = Math.max(1, Math.min(20, parseInt(arg('--repeat', '3'), 10) || 3));
const only = arg('--genomes', '') ? arg('--genomes', '').split(',') : null;

const index = JSON.parse(readFileSync(path.join(fixtures, 'index.json'), 'utf8'));

// Import time is part of what the original's service pays once at start-up; measured apart.
const t0 = performance.now();
const { getGenomeFromGenomeString } = await import('kromosynth/util/audio-synthesis-genome.js');
const { getAudioBufferFromGenomeAndMeta } = await import('kromosynth/util/audio-buffer.js');
const { OfflineAudioContext, AudioContext } = await import('node-web-audio-api');
const importMs = performance.now() - t0;

// The batch renderer also wants a realtime AudioContext (it creates buffers on it; the audio
// itself is rendered offline). One for the whole run, as a service would keep one; `none` sink
// so that no audio device is needed.
const t1 = performance.now();
const audioContext = new AudioContext({ sampleRate: SAMPLE_RATE, sinkId: { type: 'none' } });
const audioContextMs = performance.now() - t1;

const version = (pkg) =>
  JSON.parse(readFileSync(path.join(here, 'node_modules', pkg, 'package.json'), 'utf8')).version;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const renders = [];
for (const g of index.genomes) {
  if (only && !only.includes(g.id)) continue;
  const genomeText = readFileSync(path.join(fixtures, `${g.id}.genome.json`), 'utf8');
  for (const [noteDelta, velocity, duration] of REQUESTS) {
    const fixture = g.renders.find(
      (r) => r.noteDelta === noteDelta && r.velocity === velocity && r.duration === duration);
    const ms = [];
    let sha256 = null;
    let error = null;
    for (let k = 0; k < repeat && !error; k++) {
      try {
        // Parsing the genome is part of a render in the original service (it loads the genome
        // string per request), so it is inside the timed region.
        const start = performance.now();
        const genome = await getGenomeFromGenomeString(genomeText);
        const ctx = new OfflineAudioContext({
          numberOfChannels: 2,
          length: Math.round(SAMPLE_RATE * duration),
          sampleRate: SAMPLE_RATE,
        });
        const buffer = await getAudioBufferFromGenomeAndMeta(
          { genome }, duration, noteDelta, velocity,
          false, // reverse
          false, // asDataArray
          ctx,
          audioContext,
          false, // useOvertoneInharmonicityFactors
          false, // useGPU
        );
        ms.push(performance.now() - start);
        if (k === 0) {
          const ch0 = buffer.getChannelData(0);
          sha256 = createHash('sha256')
            .update(Buffer.from(ch0.buffer, ch0.byteOffset, ch0.byteLength))
            .digest('hex');
        }
      } catch (e) {
        error = String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e);
      }
    }
    const r = {
      id: g.id, noteDelta, velocity, duration, hasNoise: g.hasNoise,
      ms, median_ms: ms.length ? median(ms) : null,
      fixture_total_ms: fixture ? fixture.timing.total_ms : null,
      sha256,
      matchesFixture: fixture && sha256 ? sha256 === fixture.sha256 : null,
      error,
    };
    process.stderr.write(
      `original ${g.id} nd=${noteDelta} v=${velocity} ${duration}s: ` +
      `${r.median_ms === null ? 'ERROR ' + error : r.median_ms.toFixed(1) + ' ms'}` +
      `${r.matchesFixture ? ' (bit-exact with fixture)' : ''}\n`);
    renders.push(r);
  }
}

await audioContext.close();
console.log(JSON.stringify({
  original: {
    package: `kromosynth@${version('kromosynth')}`,
    nodeWebAudioApi: version('node-web-audio-api'),
    node: process.version,
    import_ms: importMs,
    audioContext_create_ms: audioContextMs,
    repeat,
  },
  renders,
}, null, 1));
