// Builds the page into web/dist/: index.html plus content-hashed, minified assets
// (assets/app-HASH.js with three.js and fflate bundled in, assets/app-HASH.css), and prints
// the page's weight raw, gzipped and brotli-compressed.
//
// web/dist/ is committed: the gateway embeds it at compile time (gateway/build.rs), so cargo,
// and the gateway's Docker build, need no Node. `node build.mjs --check` rebuilds into a
// temporary folder and fails if the result differs from web/dist/ (CI runs it), so the
// committed bundle is always what these sources and the lockfile produce.
//
// Usage: npm ci && node build.mjs [--check]

import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const DIST = join(here, 'dist');
/** The goal for the whole page, compressed (issue 16). */
const BUDGET = 1024 * 1024;

function files(dir) {
  return readdirSync(dir, { recursive: true })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())
    .sort();
}

async function build(out) {
  rmSync(out, { recursive: true, force: true });
  const result = await esbuild.build({
    // Paths in the bundle are relative to the working directory: pin it, so the output (and
    // --check) is the same from any directory.
    absWorkingDir: here,
    entryPoints: { app: join(here, 'src/main.js'), style: join(here, 'src/style.css') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022', 'chrome100', 'firefox100', 'safari16'],
    entryNames: 'assets/app-[hash]',
    outdir: out,
    metafile: true,
    legalComments: 'eof',
    logLevel: 'warning',
  });
  const names = {};
  for (const [path, meta] of Object.entries(result.metafile.outputs)) {
    const ext = path.endsWith('.css') ? 'css' : 'js';
    if (meta.entryPoint) names[`app.${ext}`] = `/${relative(out, path)}`;
  }
  let html = readFileSync(join(here, 'src/index.html'), 'utf8');
  html = html.replace(/\{\{(app\.(?:js|css))\}\}/g, (_, k) => {
    if (!names[k]) throw new Error(`no built asset for ${k}`);
    return names[k];
  });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'index.html'), html);
}

function report(out) {
  let raw = 0;
  let gz = 0;
  let br = 0;
  for (const f of files(out)) {
    const bytes = readFileSync(f);
    const g = gzipSync(bytes, { level: 9 }).length;
    const b = brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
    raw += bytes.length;
    gz += g;
    br += b;
    console.log(`  ${relative(out, f).padEnd(32)} ${String(bytes.length).padStart(8)} B  gzip ${String(g).padStart(7)} B  brotli ${String(b).padStart(7)} B`);
  }
  console.log(`page weight: ${raw} B raw, ${gz} B gzip, ${br} B brotli (goal: <= ${BUDGET} B compressed)`);
  if (gz > BUDGET) {
    console.error('build: the page is over its weight goal');
    process.exitCode = 1;
  }
}

function same(a, b) {
  const fa = files(a).map((f) => relative(a, f));
  const fb = files(b).map((f) => relative(b, f));
  if (fa.join('\n') !== fb.join('\n')) return `files differ: [${fa}] vs [${fb}]`;
  for (const f of fa) {
    if (!readFileSync(join(a, f)).equals(readFileSync(join(b, f)))) return `${f} differs`;
  }
  return null;
}

if (process.argv.includes('--check')) {
  const tmp = mkdtempSync(join(tmpdir(), 'img3d-web-'));
  try {
    await build(join(tmp, 'dist'));
    const diff = same(join(tmp, 'dist'), DIST);
    if (diff) {
      console.error(`build --check: web/dist is not what the sources build (${diff}); run: cd web && npm ci && npm run build, and commit web/dist`);
      process.exit(1);
    }
    console.log('build --check: web/dist matches the sources');
    report(DIST);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else {
  await build(DIST);
  report(DIST);
}
