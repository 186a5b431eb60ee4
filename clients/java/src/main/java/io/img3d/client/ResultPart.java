package io.img3d.client;

/** One result part: a {@code result_part} announcement joined with the binary frame after it. */
public final class ResultPart {
    /** The part names the protocol defines, in the order they arrive. */
    public static final String PIXEL_IMAGES = "pixel_images.png";
    /** The six coordinate maps. */
    public static final String XYZ_IMAGES = "xyz_images.png";
    /** The textured mesh (OBJ + MTL + PNG). */
    public static final String OUTPUT_3D = "output3d.zip";

    private final String name;
    private final String contentType;
    private final byte[] bytes;

    ResultPart(String name, String contentType, byte[] bytes) {
        this.name = name;
        this.contentType = contentType;
        this.bytes = bytes;
    }

    /** The name as the server sent it. Never use it as a path without sanitising it. */
    public String name() {
        return name;
    }

    /** The MIME type as the server sent it, e.g. {@code image/png}. */
    public String contentType() {
        return contentType;
    }

    /** The part's bytes. */
    public byte[] bytes() {
        return bytes;
    }

    /** Whether this is one of the three parts the protocol defines. */
    public boolean isKnown() {
        return PIXEL_IMAGES.equals(name) || XYZ_IMAGES.equals(name) || OUTPUT_3D.equals(name);
    }
}
