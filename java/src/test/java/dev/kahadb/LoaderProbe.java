package dev.kahadb;

/** Run in a child JVM by {@link NativeLibraryTest}: loads the library and says from where. */
public final class LoaderProbe {
    private LoaderProbe() {
    }

    public static void main(String[] args) {
        try {
            String version = Kahadb.version();
            System.out.println("version " + version + " loaded from " + NativeLibrary.loadedFrom());
        } catch (UnsatisfiedLinkError e) {
            System.out.println("UnsatisfiedLinkError: " + e.getMessage());
            try {
                NativeLibrary.load();
            } catch (UnsatisfiedLinkError again) {
                System.out.println("second attempt: UnsatisfiedLinkError: " + again.getMessage());
            }
            System.exit(3);
        }
    }
}
