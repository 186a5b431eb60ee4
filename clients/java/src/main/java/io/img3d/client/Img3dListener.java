package io.img3d.client;

/**
 * What a running request reports, in protocol order.
 *
 * <p>Threading: OkHttp calls these methods on its own background reader thread (and
 * {@link #onFailed} for a timeout on the client's timer thread). Do not touch UI components
 * here directly: hand the work to the UI thread with {@code runOnUiThread} (Android),
 * {@code Platform.runLater} (JavaFX) or {@code SwingUtilities.invokeLater} (Swing). Keep the
 * methods short; a slow listener delays the next frame.
 *
 * <p>Exactly one of {@link #onCompleted} and {@link #onFailed} is called per request, last.
 */
public interface Img3dListener {
    /** The server received the image ({@code status: processing}). */
    default void onProcessing() {}

    /** Opt-in progress messages: the job waits with {@code position} jobs ahead. */
    default void onQueued(long position) {}

    /** Opt-in progress messages: {@code stage} (stage1, stage2, export, ...) is at {@code step} of {@code total}. */
    default void onProgress(String stage, int step, int total) {}

    /**
     * A result part arrived: show it now (the two PNGs come long before the ZIP). The bytes
     * belong to the listener; the client keeps no reference to them.
     */
    void onPart(ResultPart part);

    /** The server sent {@code completed}: the whole job succeeded. */
    void onCompleted();

    /** The job failed; nothing more comes for it. */
    void onFailed(Img3dFailure failure);
}
