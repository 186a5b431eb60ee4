// Helpers of the browser test: the server processes it starts and restarts, the headless
// Chromium it drives, and the pixel check of a screenshot.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

/** Chromium as Debian ships it, headless, with nothing reaching beyond loopback. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'img3d-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // WebGL without a GPU: SwiftShader, the software renderer Chromium bundles.
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
    ],
  });
  return {
    browser,
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A server process (`bin` + `args`, plus `--listen ADDR`) that prints `listening on ADDR`.
 * `start()` waits for that line; `stop()` sends SIGTERM and waits for the exit; a restart
 * listens on the same address, so an open page can reconnect to it.
 */
export class Server {
  constructor(name, bin, args) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.addr = '127.0.0.1:0';
    this.proc = null;
    this.log = '';
  }

  async start(timeoutMs = 300_000) {
    const proc = spawn(this.bin, [...this.args, '--listen', this.addr], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stderr.on('data', (d) => {
      this.log += d;
    });
    this.addr = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`${this.name}: no address in ${timeoutMs} ms:\n${this.log}`)), timeoutMs);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on (\S+)/);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before listening:\n${this.log}`));
      });
    });
    return this.addr;
  }

  /** Waits until `/readyz` is 200 (the model has loaded). */
  async ready(timeoutMs = 300_000) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      try {
        if ((await fetch(`http://${this.addr}/readyz`)).ok) return;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${this.name}: not ready after ${timeoutMs} ms:\n${this.log}`);
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Runs the `img3d` command-line client on `image` (plus `args`, e.g. `--glb`); its parts land
 * in `out`/STEM/.
 */
export function cliGenerate(bin, url, image, out, args = []) {
  const r = spawnSync(bin, ['generate', '--server', url, '--out', out, ...args, image], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`img3d generate failed (${r.status}): ${r.stdout}${r.stderr}`);
}

/**
 * Counts the pixels of a PNG screenshot that differ from `background` (0xRRGGBB) by more
 * than `tolerance` in some channel. Decoded by the browser itself (createImageBitmap), so the
 * test needs no PNG library.
 */
export async function foregroundPixels(page, png, background, tolerance = 24) {
  return page.evaluate(
    async (b64, bg, tol) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
      const [r, g, b] = [(bg >> 16) & 255, (bg >> 8) & 255, bg & 255];
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - r) > tol || Math.abs(data[i + 1] - g) > tol || Math.abs(data[i + 2] - b) > tol) n++;
      }
      return { foreground: n, total: bitmap.width * bitmap.height };
    },
    Buffer.from(png).toString('base64'),
    background,
    tolerance,
  );
}

/**
 * Clicks each download link named in `names` (as a person would) and waits until Chromium has
 * saved every file into `dir`.
 */
export async function downloadParts(page, dir, names, timeoutMs = 20_000) {
  mkdirSync(dir, { recursive: true });
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir });
  for (const name of names) await page.click(`#downloads a[download="${name}"]`);
  const until = Date.now() + timeoutMs;
  while (names.some((n) => !existsSync(join(dir, n))) || readdirSync(dir).some((f) => f.endsWith('.crdownload'))) {
    if (Date.now() > until) throw new Error(`downloads did not finish in ${timeoutMs} ms: ${readdirSync(dir)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await cdp.detach();
}

/**
 * Reads the container of a binary glTF (glTF 2.0 specification, section 4.4): the 12-byte
 * header (magic `glTF`, version 2, total length equal to the file's), a JSON chunk, then a BIN
 * chunk. Throws on anything else; returns the parsed JSON and the BIN chunk's length.
 */
export function readGlb(bytes) {
  const fail = (why) => {
    throw new Error(`not a GLB (${bytes.length} B): ${why}`);
  };
  if (bytes.length < 20) fail('shorter than a header and a chunk header');
  if (bytes.toString('latin1', 0, 4) !== 'glTF') fail(`magic ${JSON.stringify(bytes.toString('latin1', 0, 4))}`);
  if (bytes.readUInt32LE(4) !== 2) fail(`version ${bytes.readUInt32LE(4)}`);
  if (bytes.readUInt32LE(8) !== bytes.length) fail(`header length ${bytes.readUInt32LE(8)}`);
  const jsonLength = bytes.readUInt32LE(12);
  if (bytes.toString('latin1', 16, 20) !== 'JSON') fail('the first chunk is not JSON');
  const binAt = 20 + jsonLength;
  if (binAt + 8 > bytes.length) fail(`the JSON chunk (${jsonLength} B) runs past the end`);
  const json = JSON.parse(bytes.toString('utf8', 20, binAt));
  const binLength = bytes.readUInt32LE(binAt);
  if (bytes.toString('latin1', binAt + 4, binAt + 8) !== 'BIN\0') fail('the second chunk is not BIN');
  if (binAt + 8 + binLength !== bytes.length) fail(`the BIN chunk (${binLength} B) does not end the file`);
  return { json, binLength };
}
