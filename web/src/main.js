// The page: wires the form, the protocol client, the result views and the 3D viewer.
// One job at a time, on one connection that later jobs reuse; every object URL a job made is
// revoked when the next one starts, so memory returns.

import { Client, KEY_REQUIRED } from './client.js';
import { failureSentence, queueLabel, stageLabel } from './messages.js';
import { readOptions, toQuery } from './options.js';
import { Viewer } from './viewer.js';

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  drop: $('drop'),
  file: $('file'),
  preview: $('preview'),
  form: $('options'),
  keyRow: $('key-row'),
  key: $('key'),
  start: $('start'),
  status: $('status'),
  stage: $('stage'),
  progress: $('progress'),
  error: $('error'),
  pixel: $('pixel'),
  xyz: $('xyz'),
  viewer: $('viewer'),
  downloads: $('downloads'),
  server: $('server'),
};

let image = null; // the chosen image, a File or Blob
let previewUrl = null;
let jobUrls = []; // object URLs of the last job's parts
let running = false;
let viewer = null;
let viewerError = null;

const client = new Client({
  onDrop: () => {
    if (!running) say('The connection to the server closed. The next start reconnects.');
    ui.body.dataset.connection = 'closed';
  },
});

function say(text) {
  ui.status.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = text === '';
}

function setStage(label, value = 0, max = 1) {
  ui.stage.textContent = label;
  ui.progress.max = max;
  ui.progress.value = value;
}

/** The viewer, made on first use; null (with the reason shown) where WebGL is missing. */
function getViewer() {
  if (viewer || viewerError) return viewer;
  try {
    viewer = new Viewer(ui.viewer);
  } catch (e) {
    viewerError = e;
    ui.viewer.textContent = 'This browser cannot show 3D (WebGL is off or missing). Download the mesh below instead.';
  }
  return viewer;
}

function choose(blob) {
  if (!blob || !(blob.type === '' || blob.type.startsWith('image/'))) {
    showError('That is not an image file. Choose a PNG, JPEG or WebP photo.');
    return;
  }
  image = blob;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  ui.preview.src = previewUrl;
  ui.preview.alt = `Your image${blob.name ? `: ${blob.name}` : ''}`;
  ui.preview.hidden = false;
  ui.start.disabled = running;
  showError('');
  if (!running) say('Ready: press “Make it 3D”.');
}

function resetResults() {
  for (const url of jobUrls) URL.revokeObjectURL(url);
  jobUrls = [];
  ui.pixel.removeAttribute('src');
  ui.xyz.removeAttribute('src');
  ui.downloads.replaceChildren();
  getViewer()?.clear();
  delete ui.body.dataset.done;
}

function addDownload(name, blob) {
  const url = URL.createObjectURL(blob);
  jobUrls.push(url);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.textContent = name;
  const li = document.createElement('li');
  li.append(a, ` (${(blob.size / 1024).toFixed(1)} KiB)`);
  ui.downloads.append(li);
  return url;
}

/** Shows the GLB, or the zip's OBJ when there is no GLB or it cannot be read. */
async function showMesh(glb, zip) {
  const v = getViewer();
  if (!v) return;
  try {
    if (glb) {
      try {
        await v.showGlb(await glb.arrayBuffer());
        return;
      } catch (e) {
        if (!zip) throw e;
      }
    }
    v.showZip(await zip.arrayBuffer());
  } catch (e) {
    showError(`The mesh arrived but cannot be shown here (${e.message}). Download it below.`);
  }
}

async function start() {
  let options;
  try {
    options = readOptions(ui.form);
  } catch (e) {
    showError(e.message);
    return;
  }
  const key = ui.key.value.trim();
  running = true;
  ui.start.disabled = true;
  showError('');
  resetResults();
  const began = performance.now();
  const secs = () => `${((performance.now() - began) / 1000).toFixed(1)} s`;
  setStage('Connecting');
  say(ui.body.dataset.connection === 'open' ? 'Sending the image…' : 'Connecting to the server…');
  let zip = null;
  let meshShown = false;
  const events = {
    processing: () => {
      ui.body.dataset.connection = 'open';
      ui.body.dataset.connections = String(client.connections);
      say('The server has the image and is working on it.');
      setStage('Processing');
      ui.progress.removeAttribute('value'); // indeterminate until a progress event
    },
    queued: (position) => {
      say(queueLabel(position));
      setStage('Queued');
    },
    progress: (stage, step, total) => {
      say(`Working: ${secs()} so far.`);
      setStage(`${stageLabel(stage)} (${step}/${total})`, step, total);
    },
    part: (name, type, blob) => {
      const url = addDownload(name, blob);
      if (name === 'pixel_images.png') ui.pixel.src = url;
      else if (name === 'xyz_images.png') ui.xyz.src = url;
      else if (name === 'output3d.zip') {
        zip = blob;
        if (!options.glb) {
          meshShown = true;
          showMesh(null, blob);
        }
      } else if (name === 'output3d.glb') {
        meshShown = true;
        showMesh(blob, zip);
      }
      say(`Received ${name} after ${secs()}.`);
    },
  };
  try {
    await client.run(image, { query: toQuery(options, key), key }, events);
    // A server without the GLB option sends only the zip: show that.
    if (!meshShown && zip) showMesh(null, zip);
    setStage('Done', 1, 1);
    say(`Done in ${secs()}. Turn the mesh below, or choose another image.`);
    ui.body.dataset.done = 'completed';
  } catch (e) {
    if (e.code === KEY_REQUIRED) {
      ui.keyRow.hidden = false;
      ui.key.focus();
      // A refused key is selected, so what is typed next replaces it instead of adding to it.
      ui.key.select();
    }
    ui.body.dataset.connection = client.ws ? 'open' : 'closed';
    setStage('Failed');
    say(`The job failed after ${secs()}.`);
    showError(failureSentence(e));
    ui.body.dataset.done = `failed:${e.code}`;
  } finally {
    running = false;
    ui.start.disabled = image === null;
  }
}

async function describeServer() {
  try {
    const text = await (await fetch('/readyz', { cache: 'no-store' })).text();
    const model = text.split('\n').find((l) => l.startsWith('model:'));
    if (model) ui.server.textContent = `Server: ${model}`;
  } catch {
    // The page works without it; the first job says whether the server answers.
  }
}

ui.file.addEventListener('change', () => choose(ui.file.files[0]));
ui.start.addEventListener('click', start);
ui.form.addEventListener('submit', (e) => e.preventDefault());
ui.keyRow.addEventListener('submit', (e) => {
  e.preventDefault();
  if (!running && image) start();
});
for (const target of [document, ui.drop]) {
  target.addEventListener('dragover', (e) => {
    e.preventDefault();
    ui.drop.classList.add('over');
  });
}
document.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  choose(e.dataTransfer?.files[0]);
});
document.addEventListener('paste', (e) => {
  const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) choose(file);
});
getViewer();
describeServer();
