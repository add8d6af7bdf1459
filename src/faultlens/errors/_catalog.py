"""The user-facing message catalog: templates by code and locale, and locale negotiation.

Shipped catalogs are JSON files in ``faultlens/errors/messages/`` named by locale
(``en.json``, ``pt-BR.json``), each a flat object ``{"<key>": "<template>"}``;
applications add or override entries with :func:`register_messages`.  A key is an
error code (``"validation_error"``), ``"category.<name>"`` (the message of a
whole category) or ``"error"`` (the last resort).  A locale falls back to its
language (``pt-BR`` to ``pt``) and then to English, entry by entry.

Templates name values in braces, ``{field}``; ``{{`` and ``}}`` are literal
braces.  Nothing else is accepted: no attribute or index access, no conversion
or format spec, so a template cannot reach into an object, and values are
substituted in one pass, so a value containing braces stays text.  A template
whose values are not all available is skipped for the next key in line.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeAlias

from faultlens._metrics import counters, report_once
from faultlens.errors._base import ConfigurationError

__all__ = [
    "DEFAULT_LOCALE",
    "FALLBACK_MESSAGE",
    "Template",
    "catalog_for",
    "compile_template",
    "fill",
    "locales",
    "messages",
    "negotiate_locale",
    "normalize_locale",
    "register_messages",
    "render",
]

DEFAULT_LOCALE: Final = "en"
FALLBACK_MESSAGE: Final = "An unexpected error occurred. Please try again later."
"""Used only when even the English catalog has no ``"error"`` entry."""


class Slot:
    """A named value in a compiled template."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


Template: TypeAlias = str | tuple[str | Slot, ...]
"""A compiled template: plain text, or literal parts and slots in order."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]{0,63})\}|[{}]")
_KEY = re.compile(r"[a-z][a-z0-9_.]{0,99}")
_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_MAX_TEMPLATE = 1000
_MAX_HEADER = 1024  # longer Accept-Language values are ignored (default locale)
_MAX_RANGES = 32
_NEGOTIATED_CACHE = 512


def compile_template(template: str, *, where: str = "template") -> Template:
    """Parse ``template``; raise ConfigurationError naming ``where`` if it is not allowed."""
    if not isinstance(template, str):
        raise ConfigurationError(f"{where} must be a string, not {type(template).__name__}")
    if len(template) > _MAX_TEMPLATE or not template.isprintable():
        raise ConfigurationError(
            f"{where} must be printable text (no line breaks or control characters) of at "
            f"most {_MAX_TEMPLATE} characters"
        )
    parts: list[str | Slot] = []
    literal: list[str] = []
    position = 0
    for token in _TOKEN.finditer(template):
        literal.append(template[position : token.start()])
        position = token.end()
        text = token.group()
        if text == "{{":
            literal.append("{")
        elif text == "}}":
            literal.append("}")
        elif token.group(1) is not None:
            parts.append("".join(literal))
            literal = []
            parts.append(Slot(token.group(1)))
        else:
            raise ConfigurationError(
                f"{where} {template!r}: placeholders are plain names in braces, like "
                "{field}; write {{ and }} for literal braces (no attributes, indexes, "
                "conversions or format specs)"
            )
    literal.append(template[position:])
    parts.append("".join(literal))
    if len(parts) == 1:
        return str(parts[0])
    return tuple(part for part in parts if part != "")


def normalize_locale(tag: object) -> str | None:
    """Return the canonical form of a language tag (``pt_br`` -> ``pt-BR``), or None.

    Language lower-case, script title-case, region upper-case (BCP 47 style).
    """
    if not isinstance(tag, str):
        return None
    tag = tag.strip().replace("_", "-")
    if not _TAG.fullmatch(tag):
        return None
    subtags = tag.split("-")
    out = [subtags[0].lower()]
    for subtag in subtags[1:]:
        if len(subtag) == 2 and subtag.isalpha():
            out.append(subtag.upper())
        elif len(subtag) == 4 and subtag.isalpha():
            out.append(subtag.title())
        else:
            out.append(subtag.lower())
    return "-".join(out)


_lock = threading.Lock()
_shipped: dict[str, dict[str, Template]] | None = None  # loaded on first use
_registered: dict[str, dict[str, Template]] = {}
_registered_text: dict[str, dict[str, str]] = {}
# Derived, rebuilt after any change: merged catalogs and negotiation results.
_merged: dict[str, Mapping[str, Template]] = {}
_merged_text: dict[str, MappingProxyType[str, str]] = {}
_negotiated: dict[str, str] = {}
_available: tuple[str, ...] | None = None
_shipped_text: dict[str, dict[str, str]] = {}


def _compile_all(locale: str, entries: Mapping[str, object]) -> dict[str, Template]:
    compiled: dict[str, Template] = {}
    for key, template in entries.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"message keys must be strings, not {key!r} ({locale})")
        if key.startswith("$"):
            continue  # "$comment", "$schema": notes for translators
        if not _KEY.fullmatch(key):
            raise ConfigurationError(
                f"message key {key!r} ({locale}) is not an error code, 'category.<name>' or 'error'"
            )
        if not isinstance(template, str):
            raise ConfigurationError(f"message {key!r} ({locale}) must be a string")
        compiled[key] = compile_template(template, where=f"message {key!r} ({locale})")
    return compiled


def _load_shipped() -> dict[str, dict[str, Template]]:
    global _shipped
    shipped = _shipped
    if shipped is not None:
        return shipped
    with _lock:
        if _shipped is not None:
            return _shipped
        shipped = {}
        folder = resources.files(__package__ or "faultlens.errors").joinpath("messages")
        for entry in folder.iterdir():
            if not entry.name.endswith(".json"):
                continue
            locale = normalize_locale(entry.name[: -len(".json")])
            if locale is None:
                continue
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
                shipped[locale] = _compile_all(locale, data)
                _shipped_text[locale] = {k: v for k, v in data.items() if not k.startswith("$")}
            except (OSError, ValueError) as exc:
                # A broken shipped file must not break error answers: English stays.
                counters.incr("errors.catalog_load_failed")
                report_once(
                    f"catalog:{entry.name}",
                    f"message catalog {entry.name} could not be loaded ({type(exc).__name__}); "
                    "its locale falls back to English",
                )
        _shipped = shipped
    return shipped


def _chain(locale: str) -> list[str]:
    """``pt-BR`` -> ``["en", "pt", "pt-BR"]``: the layers to merge, weakest first."""
    subtags = locale.split("-")
    chain = ["-".join(subtags[: index + 1]) for index in range(len(subtags))]
    if chain[0] != DEFAULT_LOCALE:
        chain.insert(0, DEFAULT_LOCALE)
    return chain


def catalog_for(locale: str) -> Mapping[str, Template]:
    """The compiled templates of ``locale`` after fallback (cached until a registration)."""
    found = _merged.get(locale)
    if found is not None:
        return found
    shipped = _load_shipped()
    merged: dict[str, Template] = {}
    for layer in _chain(locale):
        merged.update(shipped.get(layer, {}))
        merged.update(_registered.get(layer, {}))
    frozen = MappingProxyType(merged)
    if len(_merged) < 256:
        _merged[locale] = frozen
    return frozen


def fill(template: Template, value: Callable[[str], str | None]) -> str | None:
    """Return ``template`` with its slots filled by ``value(name)``; None if one is missing."""
    if isinstance(template, str):
        return template
    out: list[str] = []
    for part in template:
        if isinstance(part, str):
            out.append(part)
            continue
        text = value(part.name)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def render(locale: str, keys: Iterable[str], value: Callable[[str], str | None]) -> str:
    """Return the first template of ``keys`` (in ``locale``) whose values all exist, filled.

    ``value(name)`` returns the safe text for a slot, or None when it has none;
    the ``"error"`` entry, then :data:`FALLBACK_MESSAGE`, ends the line.
    """
    catalog = catalog_for(locale)
    for key in (*keys, "error"):
        template = catalog.get(key)
        if template is not None:
            text = fill(template, value)
            if text is not None:
                return text
    return FALLBACK_MESSAGE


def locales() -> tuple[str, ...]:
    """Return the locales with messages, English first, then alphabetically."""
    global _available
    found = _available
    if found is None:
        names = set(_load_shipped()) | set(_registered)
        names.discard(DEFAULT_LOCALE)
        found = _available = (DEFAULT_LOCALE, *sorted(names))
    return found


def messages(locale: str) -> MappingProxyType[str, str]:
    """Return the templates ``locale`` uses, by key, after fallback (read-only).

    ``locale`` is normalized (``pt_br`` works); an unknown one gives English.
    """
    tag = normalize_locale(locale) or DEFAULT_LOCALE
    found = _merged_text.get(tag)
    if found is None:
        _load_shipped()
        merged: dict[str, str] = {}
        for layer in _chain(tag):
            merged.update(_shipped_text.get(layer, {}))
            merged.update(_registered_text.get(layer, {}))
        found = MappingProxyType(merged)
        if len(_merged_text) < 256:
            _merged_text[tag] = found
    return found


def register_messages(locale: str, entries: Mapping[str, str] | str | os.PathLike[str]) -> str:
    """Add or replace message templates for ``locale``; returns its canonical tag.

    ``entries`` is a mapping ``{key: template}`` or the path of a JSON file holding
    one (the format of the shipped catalogs).  A new locale becomes available to
    negotiation at once.  Invalid keys or templates raise ConfigurationError and
    change nothing.
    """
    tag = normalize_locale(locale)
    if tag is None:
        raise ConfigurationError(
            f"locale {locale!r} is not a language tag such as 'en', 'pt-BR' or 'es'"
        )
    if isinstance(entries, str | os.PathLike):
        try:
            data = json.loads(Path(entries).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"could not read messages for {tag} from {os.fspath(entries)!r}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"{os.fspath(entries)!r} must hold a JSON object of key -> template"
            )
        entries = data
    if not isinstance(entries, Mapping):
        raise ConfigurationError("register_messages() takes a mapping of key -> template or a path")
    compiled = _compile_all(tag, entries)
    text = {key: str(entries[key]) for key in compiled}
    with _lock:
        _registered.setdefault(tag, {}).update(compiled)
        _registered_text.setdefault(tag, {}).update(text)
        _invalidate()
    return tag


def _invalidate() -> None:
    global _available
    _merged.clear()
    _merged_text.clear()
    _negotiated.clear()
    _available = None


def negotiate_locale(value: str | None) -> str:
    """Return the best available locale for a tag or an ``Accept-Language`` value.

    Accepts ``"pt-BR"``, ``"pt_BR"``, ``"pt-br"``, ``"pt"`` (the first available
    locale of that language) and full headers like ``"pt-BR,pt;q=0.9,en;q=0.8"``
    (highest ``q`` first, equal weights in the order given; ``q=0`` excluded).
    Anything unusable, including values over 1 KiB, gives ``"en"``.  Results are
    cached.
    """
    if not value or not isinstance(value, str):
        return DEFAULT_LOCALE
    found = _negotiated.get(value)
    if found is not None:
        return found
    found = _negotiate(value) if len(value) <= _MAX_HEADER else None
    if found is None:
        found = DEFAULT_LOCALE
    if len(_negotiated) >= _NEGOTIATED_CACHE:
        _negotiated.clear()  # hostile variety cannot grow memory
    _negotiated[value] = found
    return found


def _negotiate(header: str) -> str | None:
    available = locales()
    by_lower = {tag.lower(): tag for tag in available}
    ranges: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:_MAX_RANGES]):
        tag, _, params = item.partition(";")
        tag = tag.strip()
        weight = 1.0
        if params:
            name, _, number = params.strip().partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                weight = float(number.strip())
            except ValueError:
                continue
            if not 0.0 <= weight <= 1.0:
                continue
        if weight > 0.0 and tag:
            ranges.append((-weight, index, tag))
    ranges.sort()
    for _, _, tag in ranges:
        if tag == "*":
            return DEFAULT_LOCALE
        canonical = normalize_locale(tag)
        if canonical is None:
            continue
        subtags = canonical.split("-")
        for end in range(len(subtags), 0, -1):  # pt-BR-x, then pt-BR, then pt
            match = by_lower.get("-".join(subtags[:end]).lower())
            if match is not None:
                return match
        language = subtags[0]
        for candidate in available:  # "pt" asks for any Portuguese
            if candidate.split("-", 1)[0] == language:
                return candidate
    return None


def _snapshot() -> tuple[object, ...]:
    """The registration state (tests restore it)."""
    return (
        {k: dict(v) for k, v in _registered.items()},
        {k: dict(v) for k, v in _registered_text.items()},
    )


def _restore(state: tuple[object, ...]) -> None:
    registered, registered_text = state
    with _lock:
        _registered.clear()
        _registered.update(registered)  # type: ignore[call-overload]
        _registered_text.clear()
        _registered_text.update(registered_text)  # type: ignore[call-overload]
        _invalidate()
