"""Networks only: the DiT and its parts, and the Oobleck waveform VAE. Nothing here samples."""
