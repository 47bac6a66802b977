"""A synthetic, captioned sound world: a laptop-scale stand-in for AudioSet + AudioCaps.

Seeded numpy/scipy synthesis of 19 event classes (:mod:`~ezaudio.synth.sources`), rooms
(:mod:`~ezaudio.synth.space`), scenes of one to three events (:mod:`~ezaudio.synth.scenes`),
captions with paraphrases and noise (:mod:`~ezaudio.synth.captions`) and the dataset writer
(:mod:`~ezaudio.synth.world`). See docs/synth.md.
"""

from ezaudio.synth.world import classes, make_clip, read_metadata, write_world

__all__ = ["classes", "make_clip", "read_metadata", "write_world"]
