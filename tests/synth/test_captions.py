"""Captions: faithful to the metadata, paraphrases unseen in training, noise as recorded."""

from __future__ import annotations

import re

import numpy as np

from ezaudio.synth import captions as cap
from ezaudio.synth.sources import CLASSES


def views(clip) -> list[cap.EventView]:
    return [cap.EventView.of(event) for event in clip.scene.events]


def test_every_class_has_words_and_every_attribute_value_has_phrases() -> None:
    assert set(cap.LEXICON) == {event.name for event in CLASSES}
    for name, lexicon in cap.LEXICON.items():
        assert lexicon.subjects and lexicon.keywords, name
        for subject in lexicon.subjects:  # each way to name it carries a class keyword
            phrase = " ".join([subject.noun, *subject.verbs[0]])
            assert cap.mentions(phrase, lexicon.keywords), (name, phrase)
    for (name, value), words in cap.ADVERBS.items():
        words += cap.ADJECTIVES.get((name, value), ()) + cap.UNIT_ADJECTIVES.get((name, value), ())
        for word in words:
            assert cap.mentions(word, cap.ATTRIBUTE_KEYWORDS[(name, value)]), word


def test_captions_name_every_event_and_attribute(clips) -> None:
    for clip in clips:
        assert cap.check_caption(clip.caption, views(clip)) == [], clip.caption
        assert cap.check_caption(clip.paraphrase, views(clip)) == [], clip.paraphrase
        assert clip.caption[0].isupper() and clip.caption != clip.paraphrase


def test_many_attributes_and_relations_show_up(clips) -> None:
    text = " ".join(clip.caption for clip in clips).lower()
    for words in (("twice",), ("loud",), ("hall",), ("then", "followed by"), ("while", " as "),
                  ("in the background",)):  # fmt: skip
        assert any(word in text for word in words), words


def test_paraphrase_templates_are_disjoint_from_training_templates(clips) -> None:
    train = set(cap.template_texts(cap.TRAIN))
    paraphrase = cap.template_texts(cap.PARAPHRASE)
    assert not train & set(paraphrase)
    training_captions = [c.caption.lower() for c in clips]
    training_captions += [c.wrong[0].lower() for c in clips]
    training_captions += [c.incomplete[0].lower() for c in clips if c.incomplete]
    for template in paraphrase:
        pieces = [piece for piece in cap.fixed_pieces(template) if piece]
        long_pieces = [piece for piece in pieces if " " in piece]
        for piece in long_pieces:  # no multi-word piece of a paraphrase frame in training
            pattern = re.compile(r"\b" + re.escape(piece) + r"\b")
            assert not any(pattern.search(text) for text in training_captions), piece
        # every paraphrase relation/wrapper has a marker never seen in training captions
        if pieces:
            assert any(
                not any(re.search(r"\b" + re.escape(p) + r"\b", t) for t in training_captions)
                for p in pieces
            ), template
    assert not {c.paraphrase for c in clips} & {c.caption for c in clips}


def test_single_event_paraphrases_are_always_framed(clips) -> None:
    markers = [piece for t in cap.PARAPHRASE.single_clause + cap.PARAPHRASE.single_nominal
               for piece in cap.fixed_pieces(t) if piece]  # fmt: skip
    for clip in clips:
        if len(clip.scene.events) == 1:
            assert any(clip.paraphrase.lower().startswith(m) for m in markers), clip.paraphrase


def test_wrong_captions_swap_one_class_for_one_not_in_the_scene(clips) -> None:
    for clip in clips:
        text, detail = clip.wrong
        present = {event.cls for event in clip.scene.events}
        assert detail["true_class"] in present and detail["caption_class"] not in present
        assert not cap.mentions(text, cap.LEXICON[detail["true_class"]].keywords), text
        assert cap.mentions(text, cap.LEXICON[detail["caption_class"]].keywords), text


def test_incomplete_captions_drop_one_event(clips) -> None:
    multi = [clip for clip in clips if len(clip.scene.events) > 1]
    assert multi
    for clip in clips:
        if len(clip.scene.events) == 1:
            assert clip.incomplete is None
            continue
        text, detail = clip.incomplete
        dropped = detail["dropped_class"]
        assert clip.scene.events[detail["dropped_event"]].cls == dropped
        assert not cap.mentions(text, cap.LEXICON[dropped].keywords), text
        kept = [v for i, v in enumerate(views(clip)) if i != detail["dropped_event"]]
        assert cap.check_caption(text, kept) == [], text


def test_captions_are_seeded() -> None:
    view = [cap.EventView("dog_bark", {"loudness": "loud", "space": "large_hall", "pitch":
                                       "normal", "count": 2})]  # fmt: skip
    texts = {cap.caption(view, "single", np.random.default_rng(seed)) for seed in range(40)}
    assert len(texts) >= 8  # several templates and synonyms
    for text in texts:
        assert cap.check_caption(text, view) == [], text
    again = cap.caption(view, "single", np.random.default_rng(3))
    assert again == cap.caption(view, "single", np.random.default_rng(3))
