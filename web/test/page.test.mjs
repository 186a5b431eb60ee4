// The page in a real browser (headless Chromium from Debian, driven by puppeteer-core),
// against the real servers: the protocol test server (real gateway, queue and worker loop;
// placeholder parts) for the whole flow, and the all-in-one server with the tiny bundle
// (random weights: its views and mesh are NOISE) for the real pipeline's parts; the GLB option
// (on by default) and a server started with --api-keys on both. Each step
// writes a screenshot to $IMG3D_WEB_OUT (default out/web) and the timings to timings.txt.
//
// Run by tests/e2e/web_page.sh, which builds nothing and passes the binaries' paths:
//   IMG3D_PROTOCOL_SERVER, IMG3D_WORKER, IMG3D_CLI, IMG3D_EXAMPLE (an image file).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deflateSync, crc32 } from 'node:zlib';
import { cliGenerate, downloadParts, foregroundPixels, launchBrowser, readGlb, Server } from './support.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name} (tests/e2e/web_page.sh does)`);
  return v;
};
const OUT = process.env.IMG3D_WEB_OUT ?? 'out/web';
const BACKGROUND = 0x202124; // web/src/viewer.js: the viewer's clear colour
const PARTS = ['pixel_images.png', 'xyz_images.png', 'output3d.zip'];
/** With the GLB option (`formats=zip,glb`): the GLB comes after the zip. */
const GLB_PARTS = [...PARTS, 'output3d.glb'];
const work = mkdtempSync(join(tmpdir(), 'img3d-web-test-'));
const timings = [];

/** A 48x48 RGB gradient PNG, made here (no image library needed). */
function squarePng() {
  const w = 48;
  const rows = [];
  for (let y = 0; y < w; y++) {
    const row = [0];
    for (let x = 0; x < w; x++) row.push((x * 5) % 256, (y * 5) % 256, 90);
    rows.push(...row);
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.from([0, 0, 0, w, 0, 0, 0, w, 8, 2, 0, 0, 0]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const images = {
  mushroom: env('IMG3D_EXAMPLE'),
  square: join(work, 'square.png'),
  broken: join(work, 'broken.png'),
};

async function openPage(browser, addr) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 1500 });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await page.goto(`http://${addr}/`, { waitUntil: 'load' });
  // Every stage label the page shows, in order, however briefly.
  await page.evaluate(() => {
    window.seenStages = [];
    new MutationObserver(() => window.seenStages.push(document.getElementById('stage').textContent)).observe(
      document.getElementById('stage'),
      { childList: true, characterData: true, subtree: true },
    );
  });
  return { page, problems };
}

async function shot(page, name) {
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

/** Chooses `file`, starts the job (by keyboard when `keyboard`), and times each arrival. */
async function runJob(page, file, label, { keyboard = false, timeout = 60_000 } = {}) {
  const input = await page.$('#file');
  await input.uploadFile(file);
  await page.waitForSelector('#preview:not([hidden])');
  if (keyboard) await page.focus('#start');
  return startJob(page, label, { press: keyboard ? 'Enter' : null, timeout });
}

/**
 * Starts the chosen image's job: presses `press` in the focused field (Enter in the key field
 * submits it), or clicks the start button; times each arrival from then.
 */
async function startJob(page, label, { press = null, timeout = 60_000 } = {}) {
  const t0 = Date.now();
  if (press) await page.keyboard.press(press);
  else await page.click('#start');
  const mark = {};
  const when = async (name, fn) => {
    await page.waitForFunction(fn, { timeout, polling: 20 });
    mark[name] = Date.now() - t0;
  };
  return { t0, mark, when, label };
}

function record(label, mark) {
  timings.push(`${label}: ${Object.entries(mark).map(([k, v]) => `${k} ${v} ms`).join(', ')}`);
}

const done = () => document.body.dataset.done !== undefined;
const pixelShown = () => document.getElementById('pixel').naturalWidth === 1536;
const xyzShown = () => document.getElementById('xyz').naturalWidth === 1536;
const meshShown = () => document.getElementById('viewer').dataset.format !== undefined;

/** What the viewer says it shows: its `data-format` and the canvas's accessible label. */
async function viewerLabel(page) {
  return page.$eval('#viewer', (v) => ({ format: v.dataset.format, label: v.querySelector('canvas').getAttribute('aria-label') }));
}

/** Asserts the viewer shows a `format` mesh (GLB or OBJ) and says so. */
async function assertViewerShows(page, format) {
  const { format: shown, label } = await viewerLabel(page);
  assert.equal(shown, format, `the viewer shows the ${format}`);
  assert.match(label, new RegExp(`^3D view of the mesh \\(${format}\\)`), 'the canvas label names the format');
}

/** Asserts `bytes` are a GLB with a textured mesh: a mesh, and one embedded image. */
function assertTexturedGlb(bytes, what) {
  const { json, binLength } = readGlb(bytes);
  assert.ok(json.meshes?.length >= 1, `${what}: a mesh in the GLB`);
  assert.equal(json.images?.length, 1, `${what}: one embedded texture`);
  assert.equal(json.images[0].mimeType, 'image/png', `${what}: the texture is a PNG`);
  assert.ok(binLength > 0, `${what}: a BIN chunk`);
}

/** The viewer's screenshot: how many pixels are not the background. */
async function viewerForeground(page, name) {
  const el = await page.$('#viewer');
  const png = await el.screenshot({ path: join(OUT, `${name}.png`) });
  return foregroundPixels(page, png, BACKGROUND);
}

before(() => {
  mkdirSync(OUT, { recursive: true });
  writeFileSync(images.square, squarePng());
  writeFileSync(images.broken, 'this is not an image\n');
});

after(() => {
  writeFileSync(join(OUT, 'timings.txt'), `${timings.join('\n')}\n`);
  console.log(timings.join('\n'));
  rmSync(work, { recursive: true, force: true });
});

describe('the page against the protocol test server', () => {
  const server = new Server('protocol-server', env('IMG3D_PROTOCOL_SERVER'), ['--delay-ms', '1500']);
  let chrome;
  let page;
  let problems;

  before(async () => {
    await server.start();
    chrome = await launchBrowser();
    ({ page, problems } = await openPage(chrome.browser, server.addr));
  });
  after(async () => {
    await chrome?.close();
    await server.stop();
  });

  it('serves a labelled page with an empty viewer', async () => {
    await shot(page, '01-page');
    assert.equal(await page.title(), 'img3d: image to 3D');
    const unlabelled = await page.$$eval('input, select', (els) => els.filter((e) => e.labels.length === 0).map((e) => e.id));
    assert.deepEqual(unlabelled, [], 'every field has a label');
    const empty = await viewerForeground(page, '01-viewer-empty');
    assert.ok(empty.foreground < empty.total * 0.001, `the empty viewer is background: ${JSON.stringify(empty)}`);
  });

  it('uploads, shows progress, the views as they arrive, then the mesh', async () => {
    const job = await runJob(page, images.mushroom, 'protocol server, first image');
    await job.when('processing', () => document.getElementById('stage').textContent !== 'Connecting');
    await job.when('progress', () => /^Stage \d of 5: /.test(document.getElementById('stage').textContent));
    await shot(page, '02-progress');
    await job.when('pixel_images', pixelShown);
    // The views show while the job still runs: before the coordinate maps and the mesh.
    assert.equal(await page.evaluate(xyzShown), false, 'pixel_images.png is shown before xyz_images.png arrives');
    await shot(page, '03-views');
    await job.when('xyz_images', xyzShown);
    await job.when('completed', done);
    await job.when('mesh', meshShown);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'completed');
    const stages = await page.evaluate(() => window.seenStages);
    assert.ok(stages.some((s) => s.startsWith('Stage 2 of 5: Generating the six views')), `stages seen: ${stages}`);
    assert.ok(stages.some((s) => s.startsWith('Stage 3 of 5: Generating the coordinate maps')), `stages seen: ${stages}`);
    // The GLB option is on by default: the server sends output3d.glb after the zip, and the
    // viewer shows that (the double's textured cube): pixels not the background.
    assert.deepEqual(await page.$$eval('#downloads a', (as) => as.map((a) => a.download)), GLB_PARTS);
    await assertViewerShows(page, 'GLB');
    await new Promise((r) => setTimeout(r, 500));
    const lit = await viewerForeground(page, '04-mesh');
    assert.ok(lit.foreground > lit.total * 0.05, `the viewer shows the mesh: ${JSON.stringify(lit)}`);
    await shot(page, '04-page-done');
  });

  it('lets the mesh be turned with the keyboard', async () => {
    const before = await page.$eval('#viewer canvas', (c) => c.toDataURL());
    await page.focus('#viewer canvas');
    await page.keyboard.down('Shift');
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.up('Shift');
    await page.keyboard.press('+');
    const after = await page.$eval('#viewer canvas', (c) => c.toDataURL());
    assert.notEqual(after, before, 'Shift+arrow and + change the view');
  });

  it('downloads each part, the GLB too, with the bytes another client receives', async () => {
    const downloads = join(work, 'downloads');
    await downloadParts(page, downloads, GLB_PARTS);
    const cli = join(work, 'cli');
    cliGenerate(env('IMG3D_CLI'), `ws://${server.addr}/generate3d`, images.mushroom, cli, ['--glb']);
    assertTexturedGlb(readFileSync(join(downloads, 'output3d.glb')), "the page's output3d.glb");
    for (const part of GLB_PARTS) {
      const got = readFileSync(join(downloads, part));
      const expected = readFileSync(join(cli, 'mushroom', part));
      assert.ok(got.equals(expected), `${part}: the page's download (${got.length} B) equals the CLI's (${expected.length} B)`);
    }
  });

  it('runs a second image on the same connection, started from the keyboard', async () => {
    const job = await runJob(page, images.square, 'protocol server, second image (same connection)', { keyboard: true });
    await job.when('pixel_images', pixelShown);
    await job.when('completed', done);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'completed');
    assert.equal(await page.evaluate(() => document.body.dataset.connections), '1', 'one connection for both jobs');
    await shot(page, '05-second-image');
  });

  it('shows a bad image\'s failure as a sentence with what to do', async () => {
    const job = await runJob(page, images.broken, 'protocol server, bad image');
    await job.when('failed', done);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'failed:invalid_image');
    const error = await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));
    assert.match(error, /could not read this file as an image: .+ Choose a PNG, JPEG or WebP photo\./);
    assert.equal(await page.$$eval('#downloads a', (as) => as.length), 0, 'a failed job offers no downloads');
    await shot(page, '06-bad-image');
  });

  it('shows a server restart and reconnects for the next job', async () => {
    await server.stop();
    await page.waitForFunction(() => document.getElementById('status').textContent.includes('connection to the server closed'), { timeout: 10_000 });
    await shot(page, '07-server-gone');
    await server.start();
    const job = await runJob(page, images.square, 'protocol server, after a restart (new connection)');
    await job.when('completed', done);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'completed');
    assert.equal(await page.evaluate(() => document.body.dataset.connections), '2', 'a new connection after the restart');
    await shot(page, '08-reconnected');
  });

  it('fits a phone screen', async () => {
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling on a 390 px screen (overflow ${overflow} px)`);
    await shot(page, '09-phone');
  });

  it('logged no page errors or CSP violations', () => {
    // The bad image's failure is the page's own message, not a console error.
    assert.deepEqual(problems, []);
  });
});

describe('the page against a server started with --api-keys', () => {
  const KEY = 'page-test-key-4f1c9a';
  const keys = join(work, 'api-keys');
  const server = new Server('protocol-server --api-keys', env('IMG3D_PROTOCOL_SERVER'), ['--delay-ms', '300', '--api-keys', keys]);
  let chrome;
  let page;
  let problems;
  const failure = async () => ({
    done: await page.evaluate(() => document.body.dataset.done),
    error: await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent)),
    keyRow: await page.$eval('#key-row', (f) => !f.hidden),
    focused: await page.evaluate(() => document.activeElement?.id),
  });

  before(async () => {
    writeFileSync(keys, `# the browser test's key\n${KEY}\n`);
    await server.start();
    chrome = await launchBrowser();
    ({ page, problems } = await openPage(chrome.browser, server.addr));
  });
  after(async () => {
    await chrome?.close();
    await server.stop();
  });

  it('asks for a key when the server refuses a connection without one', async () => {
    assert.equal(await page.$eval('#key-row', (f) => f.hidden), true, 'no key field before the server asks');
    // This server's jobs go without the GLB: the zip's OBJ is what the viewer shows here.
    await page.click('#glb');
    assert.equal(await page.$eval('#glb', (c) => c.checked), false);
    const job = await runJob(page, images.square, 'key server, no key: the prompt');
    await job.when('failed', done);
    record(job.label, job.mark);
    assert.deepEqual(await failure(), {
      done: 'failed:key_required',
      error: 'The server asks for an API key. Enter the API key below, then start again.',
      keyRow: true,
      focused: 'key',
    });
    await shot(page, '11-key-asked');
  });

  it('says a wrong key was not accepted', async () => {
    await page.keyboard.type('wrong-key');
    const job = await startJob(page, 'key server, wrong key', { press: 'Enter' });
    await job.when('failed', done);
    record(job.label, job.mark);
    assert.deepEqual(await failure(), {
      done: 'failed:key_required',
      error: 'The server did not accept this API key. Enter the API key below, then start again.',
      keyRow: true,
      focused: 'key',
    });
    await shot(page, '12-key-wrong');
  });

  it('runs the job with the right key typed into the key field', async () => {
    // The refused key is selected in the focused field: typing replaces it.
    assert.equal(await page.$eval('#key', (k) => k.value.slice(k.selectionStart, k.selectionEnd)), 'wrong-key');
    await page.keyboard.type(KEY);
    assert.equal(await page.$eval('#key', (k) => k.value), KEY);
    const job = await startJob(page, 'key server, right key (zip only)', { press: 'Enter' });
    await job.when('pixel_images', pixelShown);
    await job.when('completed', done);
    await job.when('mesh', meshShown);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'completed');
    assert.equal(await page.$eval('#error', (e) => e.hidden), true, 'the key sentence is gone');
    assert.equal(await page.evaluate(() => document.body.dataset.connections), '1', 'refused attempts are not connections');
    assert.deepEqual(await page.$$eval('#downloads a', (as) => as.map((a) => a.download)), PARTS);
    await assertViewerShows(page, 'OBJ');
    await new Promise((r) => setTimeout(r, 500)); // the texture decodes after the mesh is shown
    const lit = await viewerForeground(page, '13-key-mesh');
    assert.ok(lit.foreground > lit.total * 0.05, `the viewer shows the mesh: ${JSON.stringify(lit)}`);
    await shot(page, '13-key-accepted');
  });

  it('logged nothing but the refused requests', () => {
    // Chromium logs each refusal (HTTP 401) itself: of the WebSocket upgrade, and of the page's
    // plain GET that asks why. Nothing else.
    const upgrade = /^console: WebSocket connection to '.*' failed: HTTP Authentication failed/;
    const probe = /^console: Failed to load resource: the server responded with a status of 401 /;
    assert.ok(problems.some((p) => upgrade.test(p)), `the refused upgrades were logged: ${problems}`);
    assert.deepEqual(problems.filter((p) => !upgrade.test(p) && !probe.test(p)), []);
  });
});

describe('the page against the all-in-one server with the tiny bundle (random weights: noise)', () => {
  const server = new Server('img3d-worker standalone', env('IMG3D_WORKER'), ['standalone', '--model', 'tiny', '--device', 'cpu']);
  let chrome;
  let page;
  let problems;

  before(async () => {
    await server.start();
    await server.ready();
    chrome = await launchBrowser();
  });
  after(async () => {
    await chrome?.close();
    await server.stop();
  });

  it('shows the real pipeline\'s views and its GLB', async () => {
    ({ page, problems } = await openPage(chrome.browser, server.addr));
    await page.waitForFunction(() => document.getElementById('server').textContent.startsWith('Server: model: ready'));
    const job = await runJob(page, images.mushroom, 'tiny bundle (CPU)', { timeout: 180_000 });
    await job.when('progress', () => /^Stage \d of 5: /.test(document.getElementById('stage').textContent));
    await job.when('pixel_images', pixelShown);
    await job.when('xyz_images', xyzShown);
    await job.when('completed', done);
    await job.when('mesh', meshShown);
    record(job.label, job.mark);
    assert.equal(await page.evaluate(() => document.body.dataset.done), 'completed');
    // The GLB option is on by default (formats=zip,glb): the pipeline's output3d.glb arrives
    // after the zip, and the viewer shows that.
    assert.equal(await page.$eval('#glb', (c) => c.checked), true);
    assert.deepEqual(await page.$$eval('#downloads a', (as) => as.map((a) => a.download)), GLB_PARTS);
    await assertViewerShows(page, 'GLB');
    await new Promise((r) => setTimeout(r, 1000));
    const lit = await viewerForeground(page, '10-tiny-mesh');
    assert.ok(lit.foreground > lit.total * 0.01, `the viewer shows the tiny mesh: ${JSON.stringify(lit)}`);
    await shot(page, '10-tiny-page');
  });

  it('downloads the GLB with the bytes the CLI receives for the same job', async () => {
    const downloads = join(work, 'tiny-downloads');
    await downloadParts(page, downloads, GLB_PARTS);
    const glb = readFileSync(join(downloads, 'output3d.glb'));
    assertTexturedGlb(glb, "the page's output3d.glb");
    // Same image, same (default) seed and options, formats=zip,glb: the same bytes.
    const cli = join(work, 'tiny-cli');
    cliGenerate(env('IMG3D_CLI'), `ws://${server.addr}/generate3d`, images.mushroom, cli, ['--glb', '--timeout', '10m']);
    for (const part of GLB_PARTS) {
      const got = readFileSync(join(downloads, part));
      const expected = readFileSync(join(cli, 'mushroom', part));
      assert.ok(got.equals(expected), `${part}: the page's download (${got.length} B) equals the CLI's (${expected.length} B)`);
    }
  });

  it('logged no page errors or CSP violations', () => {
    assert.deepEqual(problems, []);
  });
});
