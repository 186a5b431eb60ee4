package io.img3d.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import okhttp3.OkHttpClient;
import okhttp3.Response;
import okhttp3.WebSocket;
import okhttp3.WebSocketListener;
import okio.ByteString;

/**
 * The img3d client of the original design, on OkHttp's WebSocket API.
 *
 * <ul>
 *   <li>One WebSocket reused for all requests, opened on demand (first request, or the first
 *       after a drop); a failed connect is retried {@code connectAttempts - 1} times, never in
 *       the background.
 *   <li>One active request at a time: {@link #generate} returns false while one runs (a UI
 *       disables its button while {@link #isBusy()}).
 *   <li>The {@code result_part} state: the announcement is stored, the next binary frame is
 *       that part, then the state is cleared. A binary frame with nothing announced is a
 *       protocol error: the request fails and the connection is reset.
 *   <li>An application-level timeout from sending the image to the final status; on expiry the
 *       socket is closed (the server cancels the job) and the client is idle again.
 * </ul>
 *
 * <p>All state is guarded by this object's lock; listener callbacks run outside it (see
 * {@link Img3dListener} for threads).
 */
public final class Img3dClient implements AutoCloseable {
    /** OkHttp refuses to queue a message above 16 MiB ({@code RealWebSocket.MAX_QUEUE_SIZE}). */
    public static final int MAX_IMAGE_BYTES = 16 * 1024 * 1024;
    private static final long CLOSE_GRACE_MS = 2000;

    /** Settings, with the defaults of the Rust client. */
    public static final class Options {
        /** From sending the image to the final status (default 5 minutes). */
        public long timeoutMillis = 5 * 60_000;
        /** TCP connect (default 10 s). */
        public long connectTimeoutMillis = 10_000;
        /** Connection attempts per request (default 2: fail fast, one retry). */
        public int connectAttempts = 2;
        /** Pause between attempts. */
        public long retryDelayMillis = 250;
        /** Client pings (default 0 = off: the server pings and OkHttp answers). */
        public long pingIntervalMillis = 0;
        /** Ask for opt-in queued/progress messages ({@code ?events=progress}). */
        public boolean progressEvents = false;
    }

    /** One running request. Fields guarded by the client's lock, except delivery (see deliver). */
    private static final class Request {
        final Img3dListener listener;
        /** Kept only until the server first answers, for a resend on a fresh connection. */
        byte[] image;
        ScheduledFuture<?> timeout;
        String pendingName;
        String pendingType;
        int attempts = 1;
        boolean reusedSocket;
        boolean answered;
        boolean resent;
        /** Guarded by the request itself: the final callback was delivered, nothing follows. */
        boolean ended;

        Request(byte[] image, Img3dListener listener) {
            this.image = image;
            this.listener = listener;
        }
    }

    private final String url;
    private final Options options;
    private final OkHttpClient http;
    private final ScheduledExecutorService timer;

    private WebSocket socket;
    private boolean socketOpen;
    private Request active;
    private int connects;

    /** A client of {@code url} ({@code ws://HOST:PORT/generate3d}); nothing connects yet. */
    public Img3dClient(String url, Options options) {
        if (!url.startsWith("ws://") && !url.startsWith("wss://")) {
            throw new IllegalArgumentException("expected ws://HOST:PORT/generate3d, got " + url);
        }
        this.options = options;
        this.url = options.progressEvents ? url + (url.contains("?") ? "&" : "?") + "events=progress" : url;
        this.http = new OkHttpClient.Builder()
                .connectTimeout(options.connectTimeoutMillis, TimeUnit.MILLISECONDS)
                // A job may be silent for minutes: the application timeout and pings watch it.
                .readTimeout(0, TimeUnit.MILLISECONDS)
                .pingInterval(options.pingIntervalMillis, TimeUnit.MILLISECONDS)
                .build();
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "img3d-client-timer");
            t.setDaemon(true);
            return t;
        });
    }

    /** Whether a request is running. */
    public synchronized boolean isBusy() {
        return active != null;
    }

    /** How many connections were opened (1 after any number of requests on a healthy one). */
    public synchronized int connectionsOpened() {
        return connects;
    }

    /**
     * Sends one image; events go to {@code listener}. Returns false, sending nothing, while
     * another request runs.
     */
    public boolean generate(byte[] image, Img3dListener listener) {
        Request r = new Request(image, listener);
        synchronized (this) {
            if (active != null) {
                return false;
            }
            active = r;
            if (image.length > MAX_IMAGE_BYTES) {
                finishLocked(r, true);
            } else {
                r.timeout = timer.schedule(() -> onTimeout(r), options.timeoutMillis, TimeUnit.MILLISECONDS);
                r.reusedSocket = socket != null && socketOpen;
                if (socket == null) {
                    openSocketLocked();
                }
                socket.send(ByteString.of(image));
                return true;
            }
        }
        String why = "the image is " + image.length + " bytes; OkHttp sends at most " + MAX_IMAGE_BYTES;
        deliverFinal(r, () -> listener.onFailed(new Img3dFailure(Img3dFailure.Kind.SEND, why, null)));
        return true;
    }

    /** Fails a running request, closes the connection and stops the client's threads. */
    @Override
    public void close() {
        Request r;
        synchronized (this) {
            r = active;
            if (r != null) {
                finishLocked(r, false);
            }
            closeSocketLocked("client closed");
        }
        if (r != null) {
            fail(r, Img3dFailure.Kind.CONNECTION_LOST, "the client was closed", null);
        }
        timer.shutdownNow();
        http.dispatcher().executorService().shutdown();
        http.connectionPool().evictAll();
    }

    // ---- connection ----

    private void openSocketLocked() {
        okhttp3.Request request = new okhttp3.Request.Builder().url(url).build();
        socketOpen = false;
        socket = http.newWebSocket(request, new SocketListener());
    }

    private void closeSocketLocked(String reason) {
        WebSocket ws = socket;
        socket = null;
        socketOpen = false;
        if (ws != null) {
            // Close handshake first (the server cancels the job at once); drop it if it hangs.
            ws.close(1000, reason);
            if (!timer.isShutdown()) {
                timer.schedule(ws::cancel, CLOSE_GRACE_MS, TimeUnit.MILLISECONDS);
            } else {
                ws.cancel();
            }
        }
    }

    /** Ends {@code r} as the active request; {@code keepSocket} leaves the connection for the next one. */
    private void finishLocked(Request r, boolean keepSocket) {
        if (active == r) {
            active = null;
        }
        r.image = null;
        r.pendingName = null;
        if (r.timeout != null) {
            r.timeout.cancel(false);
        }
        if (!keepSocket) {
            closeSocketLocked("request ended");
        }
    }

    private void onTimeout(Request r) {
        synchronized (this) {
            if (active != r) {
                return;
            }
            finishLocked(r, false);
        }
        fail(r, Img3dFailure.Kind.TIMEOUT,
                "no final status within " + options.timeoutMillis + " ms; the connection was closed", null);
    }

    /** The connection ended under a running request: resend once, retry the connect, or fail. */
    private Runnable connectionEndedLocked(Request r, boolean wasOpen, String why) {
        if (!wasOpen && r.image != null && r.attempts < options.connectAttempts) {
            r.attempts++;
            timer.schedule(() -> retry(r), options.retryDelayMillis, TimeUnit.MILLISECONDS);
            return null;
        }
        if (wasOpen && r.reusedSocket && !r.answered && !r.resent && r.image != null) {
            // The idle connection was already dead when the image went out: send it once more.
            r.resent = true;
            r.reusedSocket = false;
            openSocketLocked();
            socket.send(ByteString.of(r.image));
            return null;
        }
        finishLocked(r, false);
        Img3dFailure f = wasOpen
                ? new Img3dFailure(Img3dFailure.Kind.CONNECTION_LOST, "connection lost before the job ended: " + why, null)
                : new Img3dFailure(Img3dFailure.Kind.CONNECT,
                        "cannot connect to " + url + " (" + r.attempts + " attempt(s)): " + why, null);
        return () -> deliverFinal(r, () -> r.listener.onFailed(f));
    }

    private void retry(Request r) {
        synchronized (this) {
            if (active != r || r.image == null) {
                return;
            }
            openSocketLocked();
            socket.send(ByteString.of(r.image));
        }
    }

    // ---- delivery ----

    /** Calls the listener unless the request already ended (a timeout may race a part). */
    private static void deliver(Request r, Runnable callback) {
        synchronized (r) {
            if (!r.ended) {
                callback.run();
            }
        }
    }

    private static void deliverFinal(Request r, Runnable callback) {
        synchronized (r) {
            if (!r.ended) {
                r.ended = true;
                callback.run();
            }
        }
    }

    private static void fail(Request r, Img3dFailure.Kind kind, String why, String code) {
        Img3dFailure f = new Img3dFailure(kind, why, code);
        deliverFinal(r, () -> r.listener.onFailed(f));
    }

    private Runnable protocolErrorLocked(Request r, String why) {
        closeSocketLocked("protocol error");
        if (r == null) {
            return null;
        }
        finishLocked(r, false);
        return () -> fail(r, Img3dFailure.Kind.PROTOCOL, why + "; the connection was reset", null);
    }

    // ---- messages (the state machine) ----

    private Runnable onTextLocked(String text) {
        Request r = active;
        if (r == null) {
            return protocolErrorLocked(null, "a text frame while no request runs");
        }
        r.answered = true;
        r.image = null;
        JsonObject msg;
        try {
            JsonElement parsed = JsonParser.parseString(text);
            if (!parsed.isJsonObject()) {
                return protocolErrorLocked(r, "a text frame that is not a JSON object: " + clip(text));
            }
            msg = parsed.getAsJsonObject();
        } catch (RuntimeException e) {
            return protocolErrorLocked(r, "a text frame that is not JSON: " + clip(text));
        }
        String type = str(msg, "type");
        String status = str(msg, "status");
        boolean failed = "status".equals(type) && "failed".equals(status);
        if (r.pendingName != null && !failed) {
            return protocolErrorLocked(r, "expected the binary frame of " + r.pendingName + ", got " + clip(text));
        }
        if (type == null) {
            return protocolErrorLocked(r, "a message without a type: " + clip(text));
        }
        switch (type) {
            case "status":
                if ("processing".equals(status)) {
                    return () -> deliver(r, r.listener::onProcessing);
                } else if ("completed".equals(status)) {
                    finishLocked(r, true);
                    return () -> deliverFinal(r, r.listener::onCompleted);
                } else if (failed) {
                    finishLocked(r, true);
                    String error = str(msg, "error");
                    String code = str(msg, "code");
                    return () -> fail(r, Img3dFailure.Kind.SERVER, error != null ? error : "(no reason given)", code);
                }
                return null; // a status this client does not know
            case "result_part":
                String name = str(msg, "name");
                String contentType = str(msg, "content_type");
                if (name == null || contentType == null) {
                    return protocolErrorLocked(r, "a result_part without name or content_type: " + clip(text));
                }
                r.pendingName = name;
                r.pendingType = contentType;
                return null;
            case "queued":
                long position = msg.has("position") ? msg.get("position").getAsLong() : 0;
                return () -> deliver(r, () -> r.listener.onQueued(position));
            case "progress":
                String stage = str(msg, "stage");
                int step = msg.has("step") ? msg.get("step").getAsInt() : 0;
                int total = msg.has("total") ? msg.get("total").getAsInt() : 0;
                return () -> deliver(r, () -> r.listener.onProgress(stage, step, total));
            default:
                return null; // a newer server's extra message type
        }
    }

    private Runnable onBinaryLocked(ByteString bytes) {
        Request r = active;
        if (r == null || r.pendingName == null) {
            return protocolErrorLocked(r, "a binary frame of " + bytes.size() + " bytes with no result_part before it");
        }
        r.answered = true;
        r.image = null;
        ResultPart part = new ResultPart(r.pendingName, r.pendingType, bytes.toByteArray());
        r.pendingName = null;
        r.pendingType = null;
        return () -> deliver(r, () -> r.listener.onPart(part));
    }

    private static String str(JsonObject o, String key) {
        JsonElement e = o.get(key);
        return e != null && e.isJsonPrimitive() ? e.getAsString() : null;
    }

    private static String clip(String s) {
        return s.length() > 200 ? s.substring(0, 200) + "..." : s;
    }

    /** OkHttp's callbacks for one socket; events of a socket that is no longer current are ignored. */
    private final class SocketListener extends WebSocketListener {
        @Override
        public void onOpen(WebSocket ws, Response response) {
            synchronized (Img3dClient.this) {
                if (ws == socket) {
                    socketOpen = true;
                    connects++;
                }
            }
        }

        @Override
        public void onMessage(WebSocket ws, String text) {
            Runnable then;
            synchronized (Img3dClient.this) {
                if (ws != socket) {
                    return;
                }
                then = onTextLocked(text);
            }
            if (then != null) {
                then.run();
            }
        }

        @Override
        public void onMessage(WebSocket ws, ByteString bytes) {
            Runnable then;
            synchronized (Img3dClient.this) {
                if (ws != socket) {
                    return;
                }
                then = onBinaryLocked(bytes);
            }
            if (then != null) {
                then.run();
            }
        }

        @Override
        public void onClosing(WebSocket ws, int code, String reason) {
            ws.close(1000, null); // complete the close handshake the server started
            ended(ws, true, "the server closed the connection (" + code + " " + reason + ")");
        }

        @Override
        public void onClosed(WebSocket ws, int code, String reason) {
            ended(ws, true, "the connection closed (" + code + " " + reason + ")");
        }

        @Override
        public void onFailure(WebSocket ws, Throwable t, Response response) {
            ended(ws, null, t.toString());
        }

        /** {@code opened}: null = whether the socket got as far as onOpen. */
        private void ended(WebSocket ws, Boolean opened, String why) {
            Runnable then = null;
            synchronized (Img3dClient.this) {
                if (ws != socket) {
                    return;
                }
                boolean wasOpen = opened != null ? opened : socketOpen;
                socket = null;
                socketOpen = false;
                if (active != null) {
                    then = connectionEndedLocked(active, wasOpen, why);
                }
            }
            if (then != null) {
                then.run();
            }
        }
    }
}
