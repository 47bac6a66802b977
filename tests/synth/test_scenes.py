"""Scenes: the metadata (onsets, offsets, counts, gains) matches the mixed audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import signal_checks as sc

from ezaudio.synth.scenes import LOUDNESS, RELATIONS, make_scene, mentioned
from ezaudio.synth.sources import BY_NAME
from ezaudio.synth.world import make_clip

SR, SECONDS = sc.CLIP_SR, sc.CLIP_SECONDS


def test_clips_have_the_right_length_and_are_finite(clips) -> None:
    for clip in clips:
        assert clip.audio.dtype == np.float32
        assert clip.audio.shape == (round(SECONDS * SR),)
        assert np.isfinite(clip.audio).all()
        assert 0.05 < np.max(np.abs(clip.audio)) <= 1.0


def test_metadata_is_consistent(clips) -> None:
    relations, sizes = set(), set()
    for clip in clips:
        scene = clip.scene
        assert scene.relation in RELATIONS
        relations.add((scene.relation, scene.background))
        sizes.add(len(scene.events))
        names = [event.cls for event in scene.events]
        assert len(set(names)) == len(names)  # no class twice in a scene
        foreground = scene.foreground
        assert [e.role for e in scene.events] == ["foreground"] * len(foreground) + [
            "background"
        ] * scene.background
        assert (len(foreground) == 1) == (scene.relation == "single")
        for event in scene.events:
            assert 0 <= event.onset < event.offset <= SECONDS
            assert 0 < event.gain <= 1.0
            event_class = BY_NAME[event.cls]
            assert ("count" in event.attributes) == event_class.countable
            assert ("pitch" in event.attributes) == event_class.pitched
            assert ("speed" in event.attributes) == event_class.rhythmic
            if event.role == "background":
                assert event_class.ambient
        onsets = [event.onset for event in foreground]
        assert onsets == sorted(onsets)
        if scene.relation == "sequence":
            for before, after in itertools.pairwise(foreground):
                assert before.offset < after.onset  # a gap between events in a sequence
    assert sizes == {1, 2, 3}
    assert {"single", "sequence", "overlap"} <= {relation for relation, _bg in relations}
    assert any(background for _relation, background in relations)


def test_single_event_onsets_are_found_within_50_ms(clips) -> None:
    checked = 0
    for clip in clips:
        scene = clip.scene
        if scene.relation != "single" or scene.background:
            continue
        event = scene.events[0]
        found = sc.first_onset(scene.audio, SR, rel_db=-30.0)
        assert abs(found - event.onset) <= 0.05, (clip.id, event.cls, found, event.onset)
        checked += 1
    assert checked >= 10


def test_near_silence_before_the_first_onset_and_between_sequenced_events(clips) -> None:
    quiet_starts = 0
    for clip in clips:
        scene = clip.scene
        if scene.background:
            continue
        env = sc.rms_envelope(scene.audio, SR)
        loudest = env.max()
        gaps = [(0.0, scene.events[0].onset)]
        if scene.relation == "sequence":
            gaps += [(a.offset, b.onset) for a, b in itertools.pairwise(scene.events)]
        for start, stop in gaps:
            first, last = int(start / sc.FRAME) + 2, int(stop / sc.FRAME) - 2
            frames = env[first:last] if last > first else env[:0]
            if frames.size:
                assert frames.max() < 0.03 * loudest, (clip.id, start, stop)  # below -30 dB
                assert frames.max() < 1e-3  # and below -60 dBFS
        quiet_starts += scene.events[0].onset >= 0.3
    assert quiet_starts >= 20  # many scenes start with silence


def test_every_event_has_energy_at_its_onset(clips) -> None:
    for clip in clips:
        env = sc.rms_envelope(clip.audio, SR)
        for event in clip.scene.events:
            first = int(event.onset / sc.FRAME)
            before = env[max(0, first - 20) : max(0, first - 2)]
            after = env[first : first + 15].max()
            assert after > 0.03 * event.gain, (clip.id, event.cls)
            if event is clip.scene.events[0] and before.size and not clip.scene.background:
                assert after > 10 * before.max(), (clip.id, event.cls)


def test_counted_events_in_scenes_have_that_many_bursts(clips) -> None:
    checked = 0
    for clip in clips:
        scene = clip.scene
        for event in scene.events:
            count = event.attributes.get("count")
            if count is None or event.cls not in ("knocking", "dog_bark", "alarm", "bird"):
                continue
            if scene.relation != "sequence" and len(scene.events) > 1:
                continue  # another event sounds at the same time
            if event.attributes["space"] in ("far", "large_hall", "small_room"):
                continue  # reverb smears the bursts
            start, stop = round(event.onset * SR), round(event.offset * SR)
            assert sc.count_bursts(clip.audio[start:stop], SR) == count, (clip.id, event.cls)
            assert len(event.params["hits"]) == count
            checked += 1
    assert checked >= 3


def test_loudness_sets_the_level() -> None:
    peaks: dict[str, list[float]] = {loudness: [] for loudness in LOUDNESS}
    for index in range(60):  # single-event scenes (3 s): the clip's peak is the event's level
        scene = make_scene(np.random.default_rng([5, index]), SR, 3.0)
        event = scene.events[0]
        peak = float(np.max(np.abs(scene.audio)))
        assert event.gain == pytest.approx(peak, abs=0.01)
        peaks[event.attributes["loudness"]].append(peak)
    assert all(len(values) >= 2 for values in peaks.values())
    assert max(peaks["quiet"]) < min(peaks["normal"]) < max(peaks["normal"]) < min(peaks["loud"])


def test_attributes_mentioned_are_those_off_default(clips) -> None:
    for clip in clips:
        for event in clip.scene.events:
            names = mentioned(event.attributes)
            assert ("count" in names) == (event.attributes.get("count") is not None)
            limit = 2 if len(clip.scene.events) == 1 else 1
            assert len([name for name in names if name != "count"]) <= limit


def test_clips_are_seeded_by_seed_and_index() -> None:
    a = make_clip(3, 5, SR, 3.0)
    b = make_clip(3, 5, SR, 3.0)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.metadata() == b.metadata()
    assert not np.array_equal(make_clip(3, 6, SR, 3.0).audio[: SR // 2], a.audio[: SR // 2])
    assert make_clip(4, 5, SR, 3.0).metadata() != a.metadata()


def test_too_short_a_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        make_scene(np.random.default_rng(0), SR, 1.0)
