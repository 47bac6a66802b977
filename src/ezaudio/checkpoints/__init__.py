"""Checkpoint files: safe loading of foreign files and conversion of the official ones."""
