"""Models on disk as a library: show, rename, copy, remove, disk usage, and export to other engines."""
