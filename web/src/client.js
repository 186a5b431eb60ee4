// The page's client of the /generate3d WebSocket protocol (SPEC.md sections 2 and 5): one
// connection reused for every job, opened on demand (first job, after a drop, or when the
// options in its URL change); one job at a time; `result_part` announces the next binary
// frame; `completed` or `failed` ends the job; anything else (a drop) fails it.

/** A failed job: `code` is the server's stable code, or one of the page's own below. */
export class JobError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The page's own codes, for failures that never reached the server's protocol. */
export const CONNECT_FAILED = 'connect_failed';
export const KEY_REQUIRED = 'key_required';
export const CONNECTION_LOST = 'connection_lost';
export const PROTOCOL = 'protocol';

/**
 * The WebSocket URL for `query` (a query string), on the host that served this page.
 * Same origin: the gateway serves both, so no CORS and a strict CSP (`connect-src 'self'`).
 */
export function endpoint(query) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/generate3d${query ? `?${query}` : ''}`;
}

/**
 * Why a connection could not open. A browser hides the HTTP status of a refused WebSocket
 * upgrade, so ask with a plain GET: the gateway answers 401 when its key is missing or wrong.
 */
async function whyNotConnected(key) {
  const probe = `/generate3d${key ? `?key=${encodeURIComponent(key)}` : ''}`;
  try {
    const res = await fetch(probe, { cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      return new JobError(KEY_REQUIRED, key ? 'The server did not accept this API key.' : 'The server asks for an API key.');
    }
    if (res.status === 503) {
      const text = (await res.text()).trim();
      return new JobError('unavailable', text || 'The server is not taking connections right now.');
    }
  } catch {
    // Not even HTTP answers: the server is down or unreachable.
  }
  return new JobError(CONNECT_FAILED, `Cannot reach the server at ${location.host}.`);
}

export class Client {
  /** `onDrop()` is called when an idle connection closes (the next job reconnects). */
  constructor({ onDrop = () => {} } = {}) {
    this.ws = null;
    this.url = null;
    this.job = null;
    this.onDrop = onDrop;
    this.connections = 0;
  }

  /** Whether a connection is open with this URL. */
  isOpenFor(url) {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.url === url;
  }

  /**
   * Opens (or reuses) the connection for `query` (which carries `key`, if any); rejects with a
   * JobError saying why not.
   */
  async connect(query, key) {
    const url = endpoint(query);
    if (this.isOpenFor(url)) return;
    this.close();
    const ws = new WebSocket(url);
    ws.binaryType = 'blob';
    this.ws = ws;
    this.url = url;
    await new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('connect failed'));
      ws.onclose = () => reject(new Error('closed while connecting'));
    }).catch(async () => {
      if (this.ws === ws) this.ws = null;
      throw await whyNotConnected(key);
    });
    this.connections += 1;
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onerror = null;
    ws.onclose = (ev) => this.dropped(ws, ev);
  }

  /** Closes the connection (which cancels a running job on the server). */
  close() {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    ws.onclose = null;
    ws.onmessage = null;
    ws.close(1000, 'options changed');
    this.fail(new JobError(CONNECTION_LOST, 'The connection was closed.'));
  }

  /**
   * Runs one job: sends `image` (a Blob) and resolves on `completed`, calling
   * `events.{processing, queued(position), progress(stage, step, total), part(name, type, blob)}`
   * on the way; rejects with a JobError on `failed` or a lost connection.
   */
  async run(image, { query, key }, events) {
    if (this.job) throw new JobError('bad_request', 'A job is already running.');
    await this.connect(query, key);
    return new Promise((resolve, reject) => {
      this.job = { events, resolve, reject, pending: null };
      this.ws.send(image);
    });
  }

  receive(data) {
    const job = this.job;
    if (typeof data !== 'string') {
      if (!job || !job.pending) {
        this.protocolError('a binary frame arrived with no result_part before it');
        return;
      }
      const { name, content_type: type } = job.pending;
      job.pending = null;
      job.events.part?.(name, type, data.type ? data : new Blob([data], { type }));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.protocolError('a text frame is not JSON');
      return;
    }
    if (!job) return; // Nothing is sent between jobs; ignore what a newer server might add.
    if (job.pending) {
      this.protocolError(`${job.pending.name} was announced but a text frame came instead`);
      return;
    }
    switch (msg.type) {
      case 'result_part':
        job.pending = msg;
        break;
      case 'queued':
        job.events.queued?.(msg.position);
        break;
      case 'progress':
        job.events.progress?.(msg.stage, msg.step, msg.total);
        break;
      case 'status':
        if (msg.status === 'processing') job.events.processing?.();
        else if (msg.status === 'completed') this.finish((j) => j.resolve());
        else if (msg.status === 'failed') {
          this.finish((j) => j.reject(new JobError(msg.code || 'unknown', msg.error || 'The job failed.')));
        }
        break;
      default:
        break; // Unknown message types are ignored, as the protocol asks of clients.
    }
  }

  finish(settle) {
    const job = this.job;
    this.job = null;
    if (job) settle(job);
  }

  fail(error) {
    this.finish((j) => j.reject(error));
  }

  /** A protocol violation: the connection cannot be trusted; drop it, the next job reconnects. */
  protocolError(what) {
    this.fail(new JobError(PROTOCOL, `The server broke the protocol (${what}).`));
    this.close();
  }

  dropped(ws, ev) {
    if (this.ws !== ws) return;
    this.ws = null;
    const why = ev.reason ? ` (${ev.reason})` : '';
    if (this.job) this.fail(new JobError(CONNECTION_LOST, `The connection to the server was lost${why}.`));
    else this.onDrop(ev);
  }
}
