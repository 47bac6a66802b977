"""Audio files and (later) datasets."""
