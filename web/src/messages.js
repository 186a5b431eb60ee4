// What the page says: pipeline stages by name, and each failure as a sentence that ends with
// what to do next. The server's own text (`error`) carries the specifics (the size limit, the
// decoder's reason), so it is quoted, not replaced.

import { CONNECT_FAILED, CONNECTION_LOST, KEY_REQUIRED, PROTOCOL } from './client.js';

/** Stage names of the opt-in progress events, in pipeline order. */
export const STAGES = {
  preprocess: 'Preparing the image',
  stage1: 'Generating the six views',
  stage2: 'Generating the coordinate maps',
  reconstruct: 'Reconstructing the mesh',
  export: 'Texturing and packing the mesh',
};

/** "Stage 2 of 5: Generating the six views" (unknown stages by their wire name). */
export function stageLabel(stage) {
  const names = Object.keys(STAGES);
  const i = names.indexOf(stage);
  return i < 0 ? `Stage ${stage}` : `Stage ${i + 1} of ${names.length}: ${STAGES[stage]}`;
}

/** "Waiting in the queue: 2 jobs ahead." */
export function queueLabel(position) {
  if (position === 0) return 'Waiting in the queue: yours is next.';
  return `Waiting in the queue: ${position} job${position === 1 ? '' : 's'} ahead.`;
}

function ensureStop(text) {
  const t = text.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** A failed job (a JobError) as one sentence a person can act on. */
export function failureSentence(err) {
  const said = ensureStop(err.message || 'The job failed');
  switch (err.code) {
    case 'busy':
      return `The server is busy with other jobs (${said.slice(0, -1)}). Wait a moment, then press “Make it 3D” again.`;
    case 'too_large':
      return `This image is too large for the server: ${said} Choose a smaller image, or scale it down and try again.`;
    case 'invalid_image':
      return `The server could not read this file as an image: ${said} Choose a PNG, JPEG or WebP photo.`;
    case 'bad_request':
      return `The server refused the request: ${said} Check the options, then start again.`;
    case 'unavailable':
      return `The server cannot run jobs right now: ${said} Try again later.`;
    case 'timeout':
      return `The job took too long and was stopped: ${said} Try again; if it keeps happening the server is overloaded.`;
    case 'cancelled':
      return `The job was cancelled: ${said} Start it again.`;
    case 'internal':
      return `Something went wrong inside the server: ${said} Try again; if it fails the same way, tell its operator.`;
    case KEY_REQUIRED:
      return `${said} Enter the API key below, then start again.`;
    case CONNECT_FAILED:
      return `${said} Check that the server is running, then start again.`;
    case CONNECTION_LOST:
      return `${said} The next start reconnects.`;
    case PROTOCOL:
      return `${said} The next start reconnects; if it happens again, the server and this page do not match.`;
    default:
      return `The job failed: ${said} Try again.`;
  }
}
