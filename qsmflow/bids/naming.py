"""BIDS derivative file names built from entities in canonical order.

The entity table (order, short names, value formats, allowed values) is the BIDS
schema's, read offline from ``bidsschematools``; nothing here is a hand-kept list except
the three transform entities that the schema does not (yet) define.

References
----------
BIDS specification, Appendix "Entity table" and the machine-readable schema
(``rules.entities``, ``objects.entities``, ``objects.formats``).
https://bids-specification.readthedocs.io/en/stable/appendices/entity-table.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bidsschematools.schema import load_schema


@dataclass(frozen=True)
class Entity:
    name: str  # the schema's (and mostly pybids') long name: "reconstruction", "description"
    short: str  # the key in file names: "rec", "desc"
    pattern: str  # regular expression a value must match in full
    allowed: tuple[str, ...] | None = None  # the schema's enum, if it has one


# Transforms (BEP 014, as fMRIPrep names them: ``from-MNI_to-orig_mode-image_xfm.h5``) are
# not in the schema. They follow ``space``, as they have in qsmflow's names until now.
TRANSFORM_ENTITIES = (("from_space", "from"), ("to_space", "to"), ("mode", "mode"))
# pybids names that are neither the schema's long nor its short name.
PYBIDS_ALIASES = {"staining": "stain"}


def _schema_entities() -> tuple[Entity, ...]:
    schema = load_schema()
    formats = schema.objects.formats
    entities = []
    for key in schema.rules.entities:  # the canonical order
        spec = schema.objects.entities[key]
        allowed = tuple(spec["enum"]) if spec.get("enum") else None
        entities.append(Entity(key, spec["name"], formats[spec["format"]]["pattern"], allowed))
        if key == "space":
            entities += [Entity(name, short, formats["label"]["pattern"])
                         for name, short in TRANSFORM_ENTITIES]
    return tuple(entities)


ENTITIES = _schema_entities()
# (long name, short name) in canonical order.
CANONICAL_ENTITY_ORDER = tuple((e.name, e.short) for e in ENTITIES)
_BY_KEY = {**{e.short: e for e in ENTITIES}, **{e.name: e for e in ENTITIES},
           **{alias: next(e for e in ENTITIES if e.name == name)
              for alias, name in PYBIDS_ALIASES.items()}}
KNOWN_ENTITIES = frozenset(_BY_KEY)


def _normalise(entities: dict) -> dict[str, str]:
    """Long name -> value for the entities that are not ``None``; any key the schema
    knows (long name, short name or pybids name) is accepted, each entity once."""
    values: dict[str, str] = {}
    for key, value in entities.items():
        if value is None:
            continue
        if key not in _BY_KEY:
            raise ValueError(f"unknown BIDS entities [{key!r}]; known: the BIDS schema's "
                             f"entities ({', '.join(e.name for e in ENTITIES)})")
        entity = _BY_KEY[key]
        if entity.name in values:
            raise ValueError(f"BIDS entity {entity.name} given twice (as {key!r} and another "
                             "name)")
        values[entity.name] = _check_value(entity, value)
    return values


def _check_value(entity: Entity, value) -> str:
    text = str(value)
    # BIDS labels are ASCII: re's [0-9a-zA-Z] is, where str.isalnum() is not ("é", "²").
    if not re.fullmatch(entity.pattern, text):
        kind = "a non-negative integer" if entity.pattern == "[0-9]+" else \
            "non-empty and alphanumeric (plus '+')"
        raise ValueError(f"BIDS entity {entity.short}={text!r} must be {kind}")
    if entity.allowed is not None and text not in entity.allowed:
        raise ValueError(f"BIDS entity {entity.short}={text!r} must be one of "
                         f"{', '.join(entity.allowed)}")
    return text


def bids_label(entities: dict) -> str:
    """The entities part of a BIDS name, such as ``sub-01_ses-1_rec-norm_run-2``.

    ``entities`` maps any BIDS entity, by its long name (``subject``, ``session``,
    ``acquisition``, ``reconstruction``, ``inversion``, ``description``), its short name
    (``rec``, ``inv``, ``mt``, ``desc``) or its pybids name, to its value; ``None``
    values are left out. The entities appear in the schema's order.
    """
    values = _normalise(entities)
    if "subject" not in values:
        raise ValueError("a BIDS file name needs the subject entity")
    return "_".join(f"{e.short}-{values[e.name]}" for e in ENTITIES if e.name in values)


def parse_label(label: str) -> dict[str, str]:
    """``sub-01_ses-pre_rec-norm_run-2`` -> ``{'subject': '01', 'session': 'pre', ...}``
    (long names), refusing unknown entities, bad values and a missing subject."""
    pairs = [part.partition("-") for part in label.split("_")]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError(f"{label!r} is not a BIDS entity label such as sub-01_ses-pre_run-1")
    values = _normalise({key: value for key, _, value in pairs})
    if len(values) != len(pairs) or "subject" not in values:
        raise ValueError(f"{label!r} repeats an entity or has no sub- entity")
    return values


def bids_filename(entities: dict, suffix: str, extension: str) -> str:
    """File name such as ``sub-01_ses-1_acq-fast_run-2_desc-local_fieldmap.nii.gz``
    (entities as in :func:`bids_label`)."""
    if not (suffix.isascii() and suffix.isalnum()):
        raise ValueError(f"BIDS suffix {suffix!r} must be alphanumeric")
    extension = extension if extension.startswith(".") else "." + extension
    return f"{bids_label(entities)}_{suffix}{extension}"


def derivative_path(out_dir, entities: dict, suffix: str, extension: str,
                    datatype: str = "anat") -> Path:
    """``out_dir/sub-X[/ses-Y]/datatype/<bids_filename>``."""
    name = bids_filename(entities, suffix, extension)
    values = _normalise(entities)
    folder = Path(out_dir) / f"sub-{values['subject']}"
    if "session" in values:
        folder = folder / f"ses-{values['session']}"
    return folder / datatype / name


def group_filename(entities: dict, suffix: str, extension: str) -> str:
    """A group-level file name, ``group_<entities>_<suffix><extension>``, such as
    ``group_space-MNI152NLin2009aSym_res-1_desc-controlMean_Chimap.nii.gz``: BIDS has no
    group-level entity, so ``group`` takes the place of ``sub-<label>``; the entities are
    checked and ordered as in :func:`bids_label`."""
    values = _normalise(entities)
    if "subject" in values:
        raise ValueError("a group-level file name has no subject entity")
    if not (suffix.isascii() and suffix.isalnum()):
        raise ValueError(f"BIDS suffix {suffix!r} must be alphanumeric")
    extension = extension if extension.startswith(".") else "." + extension
    label = "_".join(f"{e.short}-{values[e.name]}" for e in ENTITIES if e.name in values)
    return f"group_{label}_{suffix}{extension}"
