"""Session workers: one handler per document ``sessionType``."""
