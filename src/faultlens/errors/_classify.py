"""classify(): map any exception to a Classification, fast, with rules applications extend.

Order of decision for an exception ``exc``:

1. Predicates registered with :func:`register`, in registration order; the first
   that returns true wins.  They run on every call (each costs what it does).
2. A :class:`~faultlens.errors.FaultlensError` classifies from its own attributes.
3. Type rules, walking ``type(exc).__mro__`` from the most specific class: at
   each class an application rule registered for the type object, then one
   registered by dotted name, then a built-in rule (all keyed by class, the
   built-ins by ``"module.QualName"``, so third-party libraries are never
   imported here).  A rule is a fixed classification or a function of the
   instance (an errno, an HTTP status, a SQLSTATE); a function that does not
   recognise the instance passes to the next class in the MRO.
4. Nothing matched: category ``unknown``, code ``internal_error``, status 500.

The MRO walk happens once per exception type; its result is cached (and the
cache cleared whenever a rule or category is registered), so classifying a known
type costs one dict lookup.  ``classify`` never raises: a failing predicate or
rule is counted (``errors.classify_failed``) and skipped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

from faultlens._metrics import counters
from faultlens.errors._base import ConfigurationError, FaultlensError
from faultlens.errors._kinds import (
    Classification,
    Severity,
    _listeners,
    category_info,
    check_code,
    check_layer,
    check_severity,
    check_status,
)
from faultlens.errors._rules import BUILTIN_RULES, UNKNOWN

__all__ = ["Predicate", "Resolver", "classify", "register"]

Resolver: TypeAlias = Callable[[BaseException], Classification | None]
"""A rule that looks at the instance; ``None`` means "not mine, keep looking"."""
Predicate: TypeAlias = Callable[[BaseException], bool]
Rule: TypeAlias = Classification | Resolver
# What the cache holds per type: a classification, or the rules to try in order
# (functions, ending with a classification).
_Entry: TypeAlias = Classification | tuple[Rule, ...]

_CACHE_SIZE = 4096  # distinct exception types; more (generated classes) start over
_DOTTED = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_<>][\w<>]*)+")

_lock = threading.Lock()
# Copy-on-write: classify() reads these without a lock.
_type_rules: dict[type, Rule] = {}
_name_rules: dict[str, Rule] = {}
_predicates: tuple[tuple[Predicate, Classification], ...] = ()
_cache: dict[type, _Entry] = {}
# Bumped by every change of the rules: a walk that raced with one is not cached.
_generation = 0


def _from_attributes(exc: BaseException) -> Classification:
    # The class's classification, or the instance's when it overrode something.
    return exc._classification  # type: ignore[attr-defined,no-any-return]


_OWN_ATTRIBUTES: tuple[Rule, ...] = (_from_attributes,)


def classify(exc: BaseException) -> Classification:
    """Return the :class:`Classification` of ``exc`` (see the module for the rules).

    Never raises.  A known type costs about 0.1 µs; predicates, when any are
    registered, run first on every call.
    """
    try:
        if _predicates:
            for predicate, classification in _predicates:
                try:
                    if predicate(exc):
                        return classification
                except Exception:
                    counters.incr("errors.classify_failed")
        kind = exc.__class__
        entry = _cache.get(kind)
        if entry is None:
            entry = _resolve(kind)
        if isinstance(entry, Classification):
            return entry
        if entry is _OWN_ATTRIBUTES:
            return exc._classification  # type: ignore[attr-defined,no-any-return]
        return _evaluate(entry, exc)
    except Exception:  # a hostile __class__ or __mro__: answer, do not break the caller
        counters.incr("errors.classify_failed")
        return UNKNOWN


def _evaluate(rules: tuple[Rule, ...], exc: BaseException) -> Classification:
    for rule in rules:
        if isinstance(rule, Classification):
            return rule
        try:
            found = rule(exc)
        except Exception:
            counters.incr("errors.classify_failed")
            continue
        if found is not None:
            return found
    return UNKNOWN


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _resolve(kind: type) -> _Entry:
    """Walk the MRO of ``kind`` once and cache what applies."""
    generation = _generation
    entry: _Entry
    if issubclass(kind, FaultlensError):
        entry = _OWN_ATTRIBUTES
    else:
        found: list[Rule] = []
        type_rules, name_rules = _type_rules, _name_rules
        for klass in kind.__mro__:
            rule = type_rules.get(klass)
            if rule is None:
                name = _qualified(klass)
                rule = name_rules.get(name)
                if rule is None:
                    rule = BUILTIN_RULES.get(name)
                    if rule is None:
                        continue
            found.append(rule)
            if isinstance(rule, Classification):
                break
        else:
            found.append(UNKNOWN)
        first = found[0]
        entry = first if len(found) == 1 and isinstance(first, Classification) else tuple(found)
    cache = _cache
    if len(cache) >= _CACHE_SIZE:
        counters.incr("errors.classify_cache_reset")
        cache.clear()
    if generation == _generation:
        cache[kind] = entry
    return entry


def _clear_cache() -> None:
    global _generation
    _generation += 1
    _cache.clear()


_listeners.append(_clear_cache)  # categories changed: rules built from them may differ


def register(
    target: type[BaseException] | str | Predicate,
    *,
    category: str,
    severity: Severity | str | None = None,
    layer: str | None = None,
    code: str | None = None,
    retryable: bool | None = None,
    status: int | None = None,
) -> Classification:
    """Classify exceptions matching ``target`` as given; returns the stored classification.

    ``target`` is an exception type (it and its subclasses, the most specific rule
    in the MRO winning), a dotted ``"module.QualName"`` string (the same, without
    importing the module: ``"botocore.exceptions.ClientError"``), or a predicate
    ``exc -> bool`` (checked before every type rule, in registration order, on
    each call: keep predicates cheap and few).  Values not given come from the
    category's defaults (see :func:`register_category`).  Registering a type or
    name again replaces its rule.  A :class:`FaultlensError` subclass cannot be
    registered: set its class attributes instead.  Raises
    :class:`ConfigurationError` for invalid values.
    """
    info = category_info(category)
    classification = Classification(
        info.name,
        check_severity(severity) if severity is not None else info.severity,
        check_layer(layer) if layer is not None else info.layer,
        check_code(code) if code is not None else info.code,
        bool(retryable) if retryable is not None else info.retryable,
        check_status(status) if status is not None else info.status,
    )
    global _type_rules, _name_rules, _predicates
    with _lock:
        if isinstance(target, type):
            if not issubclass(target, BaseException):
                raise ConfigurationError(
                    f"register() takes an exception type, not {target.__qualname__}"
                )
            if issubclass(target, FaultlensError):
                raise ConfigurationError(
                    f"{target.__qualname__} is a FaultlensError: set category, severity, layer, "
                    "code, retryable and status as class attributes instead of registering it"
                )
            _type_rules = {**_type_rules, target: classification}
        elif isinstance(target, str):
            if not _DOTTED.fullmatch(target):
                raise ConfigurationError(
                    f"register({target!r}): a string target is the dotted name of an exception "
                    "class, 'module.QualName' (e.g. 'botocore.exceptions.ClientError')"
                )
            _name_rules = {**_name_rules, target: classification}
        elif callable(target):
            _predicates = (*_predicates, (target, classification))
        else:
            raise ConfigurationError(
                "register() takes an exception type, a 'module.QualName' string or a "
                f"predicate function, not {type(target).__name__}"
            )
        _clear_cache()
    return classification


def _snapshot() -> tuple[Any, ...]:
    """The registration state (tests restore it)."""
    return (_type_rules, _name_rules, _predicates)


def _restore(state: tuple[Any, ...]) -> None:
    global _type_rules, _name_rules, _predicates
    with _lock:
        _type_rules, _name_rules, _predicates = state
        _clear_cache()
