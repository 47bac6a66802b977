"""Captions: class synonyms, attribute words, sentence templates, paraphrases and noise.

A caption names every event of a scene by one of its class's subjects (``a dog``, ``a
hound``, ...) and mentions every attribute that is not at its default (count, loudness,
pitch, speed, space), either as an adjective (``a loud dog``) or after the verb (``barks
twice loudly in a large hall``). Events are joined by the scene's relation.

Two disjoint template sets exist: :data:`TRAIN` for the training / validation / test
captions and :data:`PARAPHRASE`, used only for the test prompts. No multi-word piece of
fixed text of a paraphrase template occurs in a training caption (the tests check it).

Noisy captions (:func:`noisy_caption`) stand in for machine-written captions: ``wrong``
swaps one event's class for a class that is not in the scene; ``incomplete`` drops one
event of a scene of two or three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ezaudio.synth.scenes import Event, default_attributes, mentioned
from ezaudio.synth.sources import BY_NAME, CLASSES


@dataclass(frozen=True)
class Subject:
    """A way to name a sound's source, with its verbs (third person, gerund)."""

    noun: str
    verbs: tuple[tuple[str, str], ...]
    article: str = "a"  # "a" (becomes "an" before a vowel), "the" or ""
    plural: bool = False
    adjectives: bool = True  # takes adjectives before the noun ("someone" does not)


@dataclass(frozen=True)
class Lexicon:
    subjects: tuple[Subject, ...]
    units: tuple[tuple[str, str, str], ...] = ()  # (one, many, tail): "two barks from a dog"
    keywords: tuple[str, ...] = ()  # word starts that name the class in any caption


def _s(noun: str, *verbs: tuple[str, str], **options) -> Subject:
    return Subject(noun, tuple(verbs), **options)


NOBODY = {"article": "", "adjectives": False}
LEXICON: dict[str, Lexicon] = {
    "dog_bark": Lexicon(
        (_s("dog", ("barks", "barking"), ("woofs", "woofing")), _s("hound", ("barks", "barking")),
         _s("guard dog", ("barks", "barking"))),
        (("bark", "barks", "from a dog"), ("dog bark", "dog barks", "")),
        ("dog", "hound"),
    ),
    "bell": Lexicon(
        (_s("church bell", ("rings", "ringing"), ("tolls", "tolling")),
         _s("bell", ("rings", "ringing"), ("chimes", "chiming")),
         _s("large bell", ("tolls", "tolling"))),
        (("bell toll", "bell tolls", ""), ("chime", "chimes", "of a bell")),
        ("bell",),
    ),
    "siren": Lexicon(
        (_s("siren", ("wails", "wailing"), ("blares", "blaring")),
         _s("police siren", ("wails", "wailing")),
         _s("ambulance siren", ("wails", "wailing"), ("sounds", "sounding"))),
        (),
        ("siren",),
    ),
    "car_horn": Lexicon(
        (_s("car horn", ("honks", "honking"), ("blares", "blaring")),
         _s("car", ("honks", "honking")), _s("truck horn", ("honks", "honking"))),
        (("honk", "honks", "from a car horn"), ("horn honk", "horn honks", "")),
        ("horn", "car", "honk"),
    ),
    "footsteps": Lexicon(
        (_s("someone", ("walks", "walking"), **NOBODY), _s("person", ("walks", "walking")),
         _s("footsteps", ("tap", "tapping"), article="", plural=True)),
        (),
        ("footstep", "walk"),
    ),
    "knocking": Lexicon(
        (_s("someone", ("knocks on a door", "knocking on a door"), **NOBODY),
         _s("person", ("knocks on a door", "knocking on a door"),
            ("knocks on wood", "knocking on wood"))),
        (("knock", "knocks", "on a door"), ("knock", "knocks", "on wood")),
        ("knock",),
    ),
    "rain": Lexicon(
        (_s("rain", ("falls", "falling"), ("pours", "pouring"), ("patters", "pattering"),
            article=""),),
        (),
        ("rain",),
    ),
    "wind": Lexicon(
        (_s("wind", ("blows", "blowing"), ("howls", "howling"), ("gusts", "gusting"),
            article="the"),
         _s("wind", ("blows", "blowing"), article="")),
        (),
        ("wind",),
    ),
    "sea_waves": Lexicon(
        (_s("waves", ("crash", "crashing"), ("roll in", "rolling in"), article="", plural=True),
         _s("sea", ("surges", "surging"), ("washes ashore", "washing ashore"), article="the"),
         _s("ocean waves", ("crash", "crashing"), article="", plural=True)),
        (),
        ("wave", "sea", "ocean"),
    ),
    "engine": Lexicon(
        (_s("engine", ("hums", "humming"), ("idles", "idling"), ("rumbles", "rumbling")),
         _s("motor", ("hums", "humming"), ("drones", "droning")),
         _s("truck engine", ("idles", "idling"))),
        (),
        ("engine", "motor"),
    ),
    "bird": Lexicon(
        (_s("bird", ("chirps", "chirping"), ("tweets", "tweeting")),
         _s("small bird", ("chirps", "chirping")), _s("songbird", ("chirps", "chirping"))),
        (("chirp", "chirps", "from a bird"), ("bird chirp", "bird chirps", "")),
        ("bird", "songbird", "chirp"),
    ),
    "clock": Lexicon(
        (_s("clock", ("ticks", "ticking")), _s("wall clock", ("ticks", "ticking")),
         _s("clock", ("tick-tocks", "tick-tocking"), article="the")),
        (),
        ("clock", "tick"),
    ),
    "alarm": Lexicon(
        (_s("alarm", ("beeps", "beeping"), ("sounds", "sounding")),
         _s("electronic alarm", ("beeps", "beeping")),
         _s("smoke alarm", ("beeps", "beeping"))),
        (("beep", "beeps", "from an alarm"), ("alarm beep", "alarm beeps", "")),
        ("alarm", "beep"),
    ),
    "telephone": Lexicon(
        (_s("telephone", ("rings", "ringing")), _s("phone", ("rings", "ringing")),
         _s("landline phone", ("rings", "ringing"))),
        (("ring", "rings", "of a telephone"), ("phone ring", "phone rings", "")),
        ("phone", "telephone"),
    ),
    "whistle": Lexicon(
        (_s("whistle", ("blows", "blowing"), ("shrills", "shrilling")),
         _s("referee", ("blows a whistle", "blowing a whistle")),
         _s("someone", ("blows a whistle", "blowing a whistle"), **NOBODY)),
        (("whistle blast", "whistle blasts", ""), ("blast", "blasts", "of a whistle")),
        ("whistle",),
    ),
    "drum": Lexicon(
        (_s("drum", ("beats", "beating"), ("pounds", "pounding")),
         _s("someone", ("plays a drum", "playing a drum"), ("beats a drum", "beating a drum"),
            **NOBODY),
         _s("drum", ("plays a beat", "playing a beat"), article="the")),
        (),
        ("drum",),
    ),
    "plucked_string": Lexicon(
        (_s("guitar string", ("is plucked", "being plucked")),
         _s("someone", ("plucks a string", "plucking a string"),
            ("plucks a guitar", "plucking a guitar"), **NOBODY),
         _s("harp string", ("is plucked", "being plucked"))),
        (("plucked note", "plucked notes", "on a guitar"), ("guitar pluck", "guitar plucks", "")),
        ("string", "guitar", "harp", "pluck"),
    ),
    "piano": Lexicon(
        (_s("piano", ("plays", "playing"), ("sounds", "sounding")),
         _s("someone", ("plays the piano", "playing the piano"), **NOBODY),
         _s("piano", ("plays a note", "playing a note"), article="the")),
        (("piano note", "piano notes", ""), ("note", "notes", "on a piano")),
        ("piano",),
    ),
    "applause": Lexicon(
        (_s("crowd", ("applauds", "applauding"), ("claps", "clapping")),
         _s("audience", ("applauds", "applauding")),
         _s("people", ("clap", "clapping"), article="", plural=True)),
        (),
        ("applau", "clap"),
    ),
}  # fmt: skip

ADJECTIVES: dict[tuple[str, str], tuple[str, ...]] = {
    ("loudness", "quiet"): ("quiet", "faint", "soft"),
    ("loudness", "loud"): ("loud",),
    ("pitch", "low"): ("low-pitched",),
    ("pitch", "high"): ("high-pitched",),
    ("speed", "slow"): ("slow",),
    ("speed", "fast"): ("fast", "quick", "rapid"),
    ("space", "far"): ("distant", "faraway"),
    ("space", "close"): ("nearby",),
}
# Adjectives of counted sounds ("two deep honks") where they differ from those of sources.
UNIT_ADJECTIVES = {("pitch", "low"): ("low-pitched", "deep")}
ADVERBS: dict[tuple[str, str], tuple[str, ...]] = {
    ("loudness", "quiet"): ("quietly", "softly", "faintly"),
    ("loudness", "loud"): ("loudly",),
    ("pitch", "low"): ("in a low pitch", "at a low pitch"),
    ("pitch", "high"): ("in a high pitch", "at a high pitch"),
    ("speed", "slow"): ("slowly",),
    ("speed", "fast"): ("quickly", "rapidly", "fast"),
    ("space", "far"): ("in the distance", "far away", "from far away"),
    ("space", "close"): ("up close", "nearby", "close to the microphone"),
    ("space", "small_room"): ("in a small room",),
    ("space", "large_hall"): ("in a large hall", "in a big hall", "in a reverberant hall"),
}
COUNT_ADVERBS = {1: ("once",), 2: ("twice", "two times"), 3: ("three times",)}
COUNT_NUMERALS = {1: ("a single", "one"), 2: ("two",), 3: ("three",)}
# Word starts a caption uses for each attribute value (for checking captions).
ATTRIBUTE_KEYWORDS: dict[tuple[str, object], tuple[str, ...]] = {
    ("loudness", "quiet"): ("quiet", "faint", "soft"),
    ("loudness", "loud"): ("loud",),
    ("pitch", "low"): ("low", "deep"),
    ("pitch", "high"): ("high",),
    ("speed", "slow"): ("slow",),
    ("speed", "fast"): ("fast", "quick", "rapid"),
    ("space", "far"): ("distan", "far"),
    ("space", "close"): ("close", "nearby"),
    ("space", "small_room"): ("small room",),
    ("space", "large_hall"): ("hall",),
    ("count", 1): ("once", "single", "one"),
    ("count", 2): ("twice", "two"),
    ("count", 3): ("three",),
}
ADJECTIVE_ORDER = ("loudness", "speed", "pitch", "space")

# ---- templates ------------------------------------------------------------------------------
# Slots: {A} {B} {C} clause ("a dog barks"), {a} {b} {c} nominal ("a dog barking");
# {F} / {f} the foreground part as a clause / nominal, {z} the background event (nominal);
# {} the whole body. Each template is (text, kind of the result: "clause" | "nominal").


@dataclass(frozen=True)
class TemplateSet:
    name: str
    single_clause: tuple[str, ...]  # wrappers of a clause body
    single_nominal: tuple[str, ...]  # wrappers of a nominal body
    sequence2: tuple[tuple[str, str], ...]
    sequence3: tuple[tuple[str, str], ...]
    overlap: tuple[tuple[str, str], ...]
    background: tuple[tuple[str, str], ...]  # over {F} or {f}
    bare_single: bool  # whether a single event may stand without a wrapper


TRAIN = TemplateSet(
    name="train",
    single_clause=("{}",),
    single_nominal=("{}", "the sound of {}", "{} can be heard"),
    sequence2=(("{A}, then {B}", "clause"), ("{A} and then {B}", "clause"),
               ("{A}, followed by {b}", "clause"), ("first {A}, then {B}", "clause"),
               ("{a} followed by {b}", "nominal"), ("{a}, then {b}", "nominal")),
    sequence3=(("{A}, then {B}, then {C}", "clause"), ("{A}, {B}, and then {C}", "clause"),
               ("first {A}, then {B}, and finally {C}", "clause"),
               ("{a}, followed by {b} and then {c}", "nominal")),
    overlap=(("{A} while {B}", "clause"), ("{A} as {B}", "clause"),
             ("{a} together with {b}", "nominal"), ("{a} and {b} at once", "nominal")),
    background=(("{F} with {z} in the background", "clause"),
                ("{F}, with {z} in the background", "clause"),
                ("{f} with {z} in the background", "nominal"),
                ("{f} over {z} in the background", "nominal")),
    bare_single=True,
)  # fmt: skip

PARAPHRASE = TemplateSet(
    name="paraphrase",
    single_clause=("in this recording, {}", "a recording in which {}", "somewhere, {}"),
    single_nominal=("you can hear {}", "this clip contains {}", "audio of {}",
                    "we hear {}", "a recording of {}"),
    sequence2=(("{A}, and after that {B}", "clause"), ("{A}; afterwards, {B}", "clause"),
               ("{a} before {b}", "nominal"), ("{a} and later {b}", "nominal")),
    sequence3=(("{A}, after that {B}, and lastly {C}", "clause"),
               ("{a}, {b}, and lastly {c}, in that order", "nominal")),
    overlap=(("{A} at the same time as {B}", "clause"), ("{A}, and meanwhile {B}", "clause"),
             ("{a} alongside {b}", "nominal"), ("{a} overlapping with {b}", "nominal")),
    background=(("{F}, against a backdrop of {z}", "clause"),
                ("{F}, with {z} behind it all", "clause"),
                ("{f} over a steady bed of {z}", "nominal")),
    bare_single=False,
)  # fmt: skip

TEMPLATE_SETS = {"train": TRAIN, "paraphrase": PARAPHRASE}


def template_texts(templates: TemplateSet) -> list[str]:
    """Every template string of a set (wrappers and relations)."""
    texts = list(templates.single_clause) + list(templates.single_nominal)
    for group in (templates.sequence2, templates.sequence3, templates.overlap,
                  templates.background):  # fmt: skip
        texts += [text for text, _kind in group]
    return texts


def fixed_pieces(template: str) -> list[str]:
    """The pieces of fixed text of a template (between slots), stripped of punctuation."""
    pieces = re.split(r"\{[A-Za-z]?\}", template)
    return [" ".join(re.findall(r"[a-z'-]+", piece.lower())) for piece in pieces]


# ---- realising events ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    """What a caption says about one event (a class and attributes, maybe not the truth)."""

    cls: str
    attributes: dict
    role: str = "foreground"

    @classmethod
    def of(cls, event: Event) -> EventView:
        return cls(event.cls, dict(event.attributes), event.role)


def _choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(article: str, first_word: str) -> str:
    if article == "a" and first_word[:1] in "aeio":
        return "an"
    return article


def realise(view: EventView, rng: np.random.Generator, kind: str) -> str:
    """One event as a ``clause`` ("a dog barks twice loudly") or a ``nominal`` ("two loud
    barks from a dog", "a dog barking twice loudly")."""
    lexicon = LEXICON[view.cls]
    attributes = view.attributes
    names = mentioned(attributes)
    count = attributes.get("count")
    if kind == "nominal" and count is not None and lexicon.units and rng.random() < 0.4:
        return _unit_phrase(lexicon, attributes, names, rng)
    subject = _choose(rng, lexicon.subjects)
    adjectives, post = [], []
    for name in (name for name in names if name != "count"):
        value = attributes[name]
        as_adjective = (
            subject.adjectives and (name, value) in ADJECTIVES and rng.random() < 0.5
        ) or (name, value) not in ADVERBS
        if as_adjective:
            adjectives.append((name, _choose(rng, ADJECTIVES[(name, value)])))
        else:
            post.append(_choose(rng, ADVERBS[(name, value)]))
    adjectives.sort(key=lambda item: ADJECTIVE_ORDER.index(item[0]))
    words = [word for _name, word in adjectives] + [subject.noun]
    article = _article(subject.article, words[0])
    noun_phrase = " ".join([article, *words] if article else words)
    third, gerund = _choose(rng, subject.verbs)
    post = _join_adverbs(post)
    if count is not None:
        post.insert(0, _choose(rng, COUNT_ADVERBS[count]))
    if kind == "nominal":
        verb = gerund
    elif count is None and rng.random() < 0.4:
        verb = ("are " if subject.plural else "is ") + gerund
    else:
        verb = third
    return " ".join([noun_phrase, verb, *post])


def _join_adverbs(post: list[str]) -> list[str]:
    """``["quietly", "quickly"]`` -> ``["quietly and quickly"]`` (one-word adverbs only)."""
    words = [item for item in post if " " not in item]
    if len(words) < 2:
        return post
    phrases = [item for item in post if " " in item]
    return [" and ".join(words), *phrases]


def _unit_phrase(lexicon: Lexicon, attributes: dict, names: list[str], rng) -> str:
    count = attributes["count"]
    one, many, tail = _choose(rng, lexicon.units)
    adjectives, post = [], []
    for name in (name for name in names if name != "count"):
        value = attributes[name]
        if ((name, value) in ADJECTIVES and rng.random() < 0.6) or (name, value) not in ADVERBS:
            words = UNIT_ADJECTIVES.get((name, value), ADJECTIVES[(name, value)])
            adjectives.append((name, _choose(rng, words)))
        else:
            post.append(_choose(rng, ADVERBS[(name, value)]))
    adjectives.sort(key=lambda item: ADJECTIVE_ORDER.index(item[0]))
    numeral = _choose(rng, COUNT_NUMERALS[count])
    words = [numeral, *(word for _name, word in adjectives), one if count == 1 else many]
    post = _join_adverbs(post)
    return " ".join(word for word in [*words, tail, *post] if word)


# ---- whole captions -----------------------------------------------------------------------


def caption(
    views: list[EventView],
    relation: str,
    rng: np.random.Generator,
    templates: TemplateSet = TRAIN,
) -> str:
    """A caption of events ``views`` (foreground in order, then at most one background)."""
    foreground = [view for view in views if view.role == "foreground"]
    background = [view for view in views if view.role == "background"]
    if not foreground:  # only a bed: describe it as a single event
        foreground, background = background, []
    if len(foreground) == 1:
        relation = "single"
    if relation == "single":
        body_kind = "clause" if rng.random() < 0.5 else "nominal"
        body = realise(foreground[0], rng, body_kind)
    else:
        group = {
            ("sequence", 2): templates.sequence2, ("sequence", 3): templates.sequence3,
            ("overlap", 2): templates.overlap,
        }[(relation, len(foreground))]  # fmt: skip
        text, body_kind = _choose(rng, group)
        body = _fill(text, foreground, rng)
    if background:
        fitting = [item for item in templates.background if _takes(item[0], body_kind)]
        text, body_kind = _choose(rng, fitting)
        body = text.replace("{F}", body).replace("{f}", body)
        body = body.replace("{z}", realise(background[0], rng, "nominal"))
    single = relation == "single" and not background
    wrappers = templates.single_clause if body_kind == "clause" else templates.single_nominal
    if not single and not templates.bare_single:
        wrappers = (*wrappers, "{}")  # the relation's words already set the caption apart
    text = _choose(rng, wrappers).replace("{}", body)
    return text[:1].upper() + text[1:]


def _takes(template: str, kind: str) -> bool:
    return ("{F}" in template) == (kind == "clause")


def _fill(template: str, views: list[EventView], rng: np.random.Generator) -> str:
    text = template
    for index, view in enumerate(views):
        upper, lower = "{" + "ABC"[index] + "}", "{" + "abc"[index] + "}"
        if upper in text:
            text = text.replace(upper, realise(view, rng, "clause"))
        if lower in text:
            text = text.replace(lower, realise(view, rng, "nominal"))
    return text


# ---- noise ----------------------------------------------------------------------------------


def wrong_views(views: list[EventView], rng: np.random.Generator) -> tuple[list[EventView], dict]:
    """The events with one class swapped for a class not in the scene (attributes kept where
    the new class has them)."""
    index = int(rng.integers(len(views)))
    present = {view.cls for view in views}
    choices = [event.name for event in CLASSES if event.name not in present]
    new = str(_choose(rng, choices))
    attributes = default_attributes(BY_NAME[new])
    for key, value in views[index].attributes.items():
        if key in attributes:
            attributes[key] = value
    changed = list(views)
    changed[index] = EventView(new, attributes, views[index].role)
    return changed, {"event": index, "true_class": views[index].cls, "caption_class": new}


def incomplete_views(
    views: list[EventView], rng: np.random.Generator
) -> tuple[list[EventView], dict] | None:
    """The events with one dropped (None for a single event)."""
    if len(views) < 2:
        return None
    index = int(rng.integers(len(views)))
    kept = [view for position, view in enumerate(views) if position != index]
    return kept, {"dropped_event": index, "dropped_class": views[index].cls}


def mentions(text: str, words: tuple[str, ...] | list[str]) -> bool:
    """Whether ``text`` has a word starting with one of ``words`` (case-insensitive)."""
    return any(re.search(r"\b" + re.escape(word), text, re.IGNORECASE) for word in words)


def check_caption(text: str, views: list[EventView]) -> list[str]:
    """What ``text`` fails to say about ``views``: missing classes or attributes."""
    problems = []
    for view in views:
        if not mentions(text, LEXICON[view.cls].keywords):
            problems.append(f"class {view.cls}")
        for name in mentioned(view.attributes):
            words = ATTRIBUTE_KEYWORDS[(name, view.attributes[name])]
            if not mentions(text, words):
                problems.append(f"{name}={view.attributes[name]} of {view.cls}")
    return problems
