package io.img3d.client;

/** Why a request failed. */
public final class Img3dFailure {
    /** The kind of failure, and what state the client is in afterwards. */
    public enum Kind {
        /** No connection could be opened; the client is idle, the next request tries again. */
        CONNECT,
        /** No final status within the timeout; the connection was closed (cancelling the job). */
        TIMEOUT,
        /** The server answered {@code failed}; the connection stays open. */
        SERVER,
        /** The server broke the protocol (e.g. a binary frame with no announcement); the connection was reset. */
        PROTOCOL,
        /** The connection dropped mid-job; the next request reconnects. */
        CONNECTION_LOST,
        /** The image could not be sent (OkHttp queues at most 16 MiB per message). */
        SEND
    }

    private final Kind kind;
    private final String message;
    private final String code;

    Img3dFailure(Kind kind, String message, String code) {
        this.kind = kind;
        this.message = message;
        this.code = code;
    }

    /** The kind of failure. */
    public Kind kind() {
        return kind;
    }

    /** A reason a person can read. */
    public String message() {
        return message;
    }

    /**
     * The server's machine-readable code for {@link Kind#SERVER} failures ({@code invalid_image},
     * {@code too_large}, {@code busy}, {@code timeout}, {@code cancelled}, {@code internal}, ...),
     * or null.
     */
    public String code() {
        return code;
    }

    /** Whether sending the same image again later can succeed. */
    public boolean isRetryable() {
        switch (kind) {
            case CONNECT:
            case TIMEOUT:
            case CONNECTION_LOST:
                return true;
            case SERVER:
                return "busy".equals(code) || "unavailable".equals(code) || "timeout".equals(code)
                        || "internal".equals(code);
            default:
                return false;
        }
    }

    @Override
    public String toString() {
        return kind + (code != null ? " (" + code + ")" : "") + ": " + message;
    }
}
