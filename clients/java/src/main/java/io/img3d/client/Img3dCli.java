package io.img3d.client;

import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Command-line entry point: sends each image in turn over one connection and saves the parts
 * as {@code OUT/<image stem>/<part>} the moment each arrives.
 *
 * <pre>java -cp img3d-client.jar:okhttp.jar:okio.jar:gson.jar io.img3d.client.Img3dCli \
 *     --server ws://127.0.0.1:8080/generate3d --out out [--timeout SECONDS] [--progress] IMAGE...</pre>
 *
 * Exit status: 0 if every job completed, 1 if any failed, 2 for usage errors.
 */
public final class Img3dCli {
    private Img3dCli() {}

    public static void main(String[] args) throws InterruptedException {
        String server = System.getenv("IMG3D_SERVER");
        String out = System.getenv().getOrDefault("IMG3D_OUT", "out");
        Img3dClient.Options options = new Img3dClient.Options();
        List<String> images = new ArrayList<>();
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "--server": server = args[++i]; break;
                    case "--out": out = args[++i]; break;
                    case "--timeout": options.timeoutMillis = (long) (Double.parseDouble(args[++i]) * 1000); break;
                    case "--progress": options.progressEvents = true; break;
                    case "-h": case "--help": usage(null); break;
                    default:
                        if (args[i].startsWith("--")) {
                            usage("unknown option " + args[i]);
                        }
                        images.add(args[i]);
                }
            }
        } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
            usage("bad arguments: " + e.getMessage());
        }
        if (server == null || images.isEmpty()) {
            usage("--server and at least one IMAGE are required");
        }
        Img3dClient client;
        try {
            client = new Img3dClient(server, options);
        } catch (IllegalArgumentException e) {
            usage(e.getMessage());
            return;
        }
        int failed = 0;
        Set<String> used = new HashSet<>();
        for (int i = 0; i < images.size(); i++) {
            String label = "[" + (i + 1) + "/" + images.size() + "] " + images.get(i);
            Path dir = Paths.get(out, claim(used, jobDirName(Paths.get(images.get(i)))));
            if (!runJob(client, Paths.get(images.get(i)), dir, label)) {
                failed++;
            }
        }
        System.out.println("connections opened: " + client.connectionsOpened());
        System.out.println((images.size() - failed) + " of " + images.size() + " job(s) succeeded, " + failed + " failed");
        client.close();
        System.exit(failed == 0 ? 0 : 1);
    }

    /** One image: send, save parts as they arrive, wait for the end; false if it failed. */
    static boolean runJob(Img3dClient client, Path image, Path dir, String label) throws InterruptedException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(image);
        } catch (IOException e) {
            System.err.println(label + ": FAILED: cannot read the image: " + e);
            return false;
        }
        long started = System.nanoTime();
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<String> failure = new AtomicReference<>();
        List<Path> written = new ArrayList<>();
        Set<String> got = new HashSet<>();
        boolean sent = client.generate(bytes, new Img3dListener() {
            @Override
            public void onProcessing() {
                System.out.println(label + ": processing");
            }

            @Override
            public void onProgress(String stage, int step, int total) {
                System.out.println(label + ": " + stage + " " + step + "/" + total);
            }

            @Override
            public void onPart(ResultPart part) {
                // Runs on OkHttp's thread; a desktop app would hand the bytes to its UI thread here.
                String name = partFileName(part.name());
                if (name == null) {
                    System.err.println(label + ": skipped a part with the unusable name " + part.name());
                    return;
                }
                try {
                    Path path = writeAtomic(dir, name, part.bytes());
                    synchronized (written) {
                        written.add(path);
                        got.add(part.name());
                    }
                    System.out.println(label + ": saved " + name + " (" + part.bytes().length + " bytes) -> " + path);
                } catch (IOException e) {
                    failure.compareAndSet(null, "cannot save " + name + ": " + e);
                }
            }

            @Override
            public void onCompleted() {
                done.countDown();
            }

            @Override
            public void onFailed(Img3dFailure f) {
                failure.compareAndSet(null, f.toString());
                done.countDown();
            }
        });
        if (!sent) {
            System.err.println(label + ": FAILED: another request is running");
            return false;
        }
        done.await();
        synchronized (written) {
            if (failure.get() == null) {
                for (String part : new String[] {ResultPart.PIXEL_IMAGES, ResultPart.XYZ_IMAGES, ResultPart.OUTPUT_3D}) {
                    if (!got.contains(part)) {
                        failure.set("the server said completed but sent no " + part);
                        break;
                    }
                }
            }
            double secs = (System.nanoTime() - started) / 1e9;
            if (failure.get() != null) {
                // A job counts only when completed arrives: remove what this job wrote.
                for (Path p : written) {
                    try {
                        Files.deleteIfExists(p);
                    } catch (IOException ignored) {
                        // best effort
                    }
                }
                try {
                    Files.deleteIfExists(dir); // only if empty
                } catch (IOException ignored) {
                    // not empty: it holds files of an earlier run
                }
                System.err.printf("%s: FAILED after %.1f s: %s%n", label, secs, failure.get());
                return false;
            }
            System.out.printf("%s: done in %.1f s -> %s%n", label, secs, dir);
            return true;
        }
    }

    /** The protocol's own names for the three parts; otherwise a plain visible file name, or null. */
    static String partFileName(String serverName) {
        if (ResultPart.PIXEL_IMAGES.equals(serverName) || ResultPart.XYZ_IMAGES.equals(serverName)
                || ResultPart.OUTPUT_3D.equals(serverName)) {
            return serverName;
        }
        String last = serverName.substring(Math.max(serverName.lastIndexOf('/'), serverName.lastIndexOf('\\')) + 1);
        StringBuilder clean = new StringBuilder();
        for (char c : last.toCharArray()) {
            if (clean.length() < 100 && (c < 128 && (Character.isLetterOrDigit(c) || c == '.' || c == '_' || c == '-'))) {
                clean.append(c);
            }
        }
        return clean.length() == 0 || clean.charAt(0) == '.' ? null : clean.toString();
    }

    /** The image's file stem without separators or control characters; "image" if nothing is left. */
    static String jobDirName(Path image) {
        Path file = image.getFileName();
        String name = file == null ? "" : file.toString();
        int dot = name.lastIndexOf('.');
        String stem = dot > 0 ? name.substring(0, dot) : name;
        String clean = stem.replaceAll("[/\\\\\\p{Cntrl}]", "_");
        return clean.isEmpty() || clean.equals(".") || clean.equals("..") ? "image" : clean;
    }

    private static String claim(Set<String> used, String base) {
        String name = base;
        for (int n = 2; !used.add(name); n++) {
            name = base + "-" + n;
        }
        return name;
    }

    /** Writes {@code dir/name} through a temp file and an atomic rename: never a partial file. */
    static Path writeAtomic(Path dir, String name, byte[] bytes) throws IOException {
        Files.createDirectories(dir);
        Path target = dir.resolve(name);
        Path tmp = Files.createTempFile(dir, "." + name + ".", ".tmp");
        try {
            Files.write(tmp, bytes);
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
            return target;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private static void usage(String error) {
        if (error != null) {
            System.err.println("img3d: " + error);
        }
        System.err.println("usage: Img3dCli --server ws://HOST:PORT/generate3d [--out DIR] [--timeout SECONDS]"
                + " [--progress] IMAGE...");
        System.exit(error == null ? 0 : 2);
    }
}
