"""The message catalog: shipped locales, negotiation, runtime registration, templates."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import faultlens
from faultlens.errors import (
    BusinessRuleError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    TransientError,
    ValidationError,
    handle,
    locales,
    messages,
    negotiate_locale,
    register_messages,
)


def test_shipped_locales() -> None:
    """English and Brazilian Portuguese ship as package data, English first."""
    assert locales()[:1] == ("en",)
    assert "pt-BR" in locales()
    folder = resources.files("faultlens.errors").joinpath("messages")
    names = {entry.name for entry in folder.iterdir()}
    assert {"en.json", "pt-BR.json"} <= names
    for name in ("en.json", "pt-BR.json"):
        data = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
        assert isinstance(data, dict)


def test_portuguese_translates_every_english_entry() -> None:
    """pt-BR has its own text for every English key (no silent English fallback)."""
    english = json.loads(
        resources.files("faultlens.errors").joinpath("messages/en.json").read_text("utf-8")
    )
    portuguese = json.loads(
        resources.files("faultlens.errors").joinpath("messages/pt-BR.json").read_text("utf-8")
    )
    assert set(english) == set(portuguese)
    for key in english:
        if not key.startswith("$"):
            assert english[key] != portuguese[key], key
    assert dict(messages("pt-BR")) == {k: v for k, v in portuguese.items() if not k.startswith("$")}


CASES: list[tuple[BaseException, str, str]] = [
    (
        ValidationError("x", field="email"),
        "The value of the field 'email' is not valid.",
        "O valor do campo 'email' não é válido.",
    ),
    (
        ValidationError("x"),
        "The request contains invalid data. Please check it and try again.",
        "A solicitação contém dados inválidos. Verifique-os e tente novamente.",
    ),
    (
        NotFoundError("no order 7"),
        "The requested resource was not found.",
        "O recurso solicitado não foi encontrado.",
    ),
    (
        TransientError("x", retry_after=30),
        "The service is temporarily unavailable. Please try again in 30 seconds.",
        "O serviço está temporariamente indisponível. Tente novamente em 30 segundos.",
    ),
    (
        TransientError("x"),
        "The service is temporarily unavailable. Please try again in a moment.",
        "O serviço está temporariamente indisponível. Tente novamente em instantes.",
    ),
    (
        TimeoutError(),
        "The operation took too long. Please try again.",
        "A operação demorou demais. Tente novamente.",
    ),
]


@pytest.mark.parametrize(("exc", "english", "portuguese"), CASES)
def test_messages_in_both_locales(exc: BaseException, english: str, portuguese: str) -> None:
    """handle() answers from the catalog in the negotiated locale."""
    assert handle(exc).message == english
    assert handle(exc, locale="en").message == english
    assert handle(exc, locale="pt-BR").message == portuguese
    assert handle(exc, locale="pt-BR").locale == "pt-BR"


def test_unknown_errors_quote_the_correlation_id_in_both_locales() -> None:
    """The generic message of an unknown error quotes the correlation id."""
    with faultlens.correlate("ref-12345") as ctx:
        english = handle(RuntimeError("secret internals"))
        portuguese = handle(RuntimeError("secret internals"), locale="pt")
    assert ctx.correlation_id == "ref-12345"
    assert "ref-12345" in english.message
    assert "ref-12345" in portuguese.message
    assert "referência" in portuguese.message
    outside = handle(RuntimeError("x"))  # no correlation: the plain generic message
    assert outside.message == "An unexpected error occurred. Please try again later."
    assert outside.correlation_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pt-BR", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("PT_br", "pt-BR"),
        ("pt", "pt-BR"),
        ("pt-PT", "pt-BR"),
        ("en", "en"),
        ("en-US", "en"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
        ("pt-BR,pt;q=0.9,en;q=0.8", "pt-BR"),
        ("fr-CH, fr;q=0.9, pt;q=0.8, *;q=0.5", "pt-BR"),
        ("en;q=0.5, pt-BR;q=0.9", "pt-BR"),
        ("pt-BR;q=0, en", "en"),
        ("de, *", "en"),
        ("pt-BR;q=2", "en"),
        ("pt-BR;q=abc", "en"),
        ("\r\n<script>", "en"),
        ("pt," * 2000, "en"),
        (";;;,,,q=", "en"),
    ],
)
def test_locale_negotiation(value: str | None, expected: str) -> None:
    """Tags in any case or separator, languages alone and Accept-Language values negotiate."""
    assert negotiate_locale(value) == expected


def test_negotiation_of_non_strings() -> None:
    """A value that is not a string negotiates to English instead of failing."""
    assert negotiate_locale(42) == "en"  # type: ignore[arg-type]
    assert handle(KeyError(), locale=["pt"]).locale == "en"  # type: ignore[arg-type]


def test_context_preferences_choose_the_locale() -> None:
    """Without a locale argument, the current context's preferences['locale'] is used."""
    with faultlens.correlate(preferences={"locale": "pt_BR"}):
        assert handle(NotFoundError("x")).locale == "pt-BR"
        assert handle(NotFoundError("x"), locale="en").locale == "en"


def test_register_messages_adds_a_locale() -> None:
    """A locale registered at runtime is negotiated, and missing keys fall back to English."""
    tag = register_messages("es_es", {"category.not_found": "No se encontró el recurso."})
    assert tag == "es-ES"
    assert "es-ES" in locales()
    assert negotiate_locale("es") == "es-ES"
    assert handle(NotFoundError("x"), locale="es").message == "No se encontró el recurso."
    assert handle(ConflictError("x"), locale="es-ES").message == messages("en")["category.conflict"]


def test_language_catalog_serves_its_regions() -> None:
    """Messages registered for a language apply to its regional locales."""
    register_messages("pt", {"duplicate": "Duplicado (pt)."})
    register_messages("pt-BR", {"gone": "Sumiu."})
    assert messages("pt-BR")["gone"] == "Sumiu."
    assert messages("pt-BR")["duplicate"] == "Já existe um registro com o mesmo valor único."
    assert messages("pt-PT")["duplicate"] == "Duplicado (pt)."


def test_register_messages_overrides_and_adds_codes() -> None:
    """Applications override shipped text and add messages for their own codes."""
    register_messages(
        "en",
        {
            "category.not_found": "Nothing here.",
            "order_limit": "You can order at most {limit} items.",
        },
    )
    assert handle(NotFoundError("x")).message == "Nothing here."
    exc = BusinessRuleError("too many", code="order_limit", limit=5)
    assert handle(exc).message == "You can order at most 5 items."
    assert handle(exc, locale="pt-BR").message == "You can order at most 5 items."  # en fallback


def test_register_messages_from_a_file(tmp_path: Path) -> None:
    """A JSON catalog file can be registered by path."""
    path = tmp_path / "de.json"
    path.write_text(json.dumps({"category.conflict": "Konflikt.", "$comment": "x"}), "utf-8")
    assert register_messages("de", path) == "de"
    assert handle(ConflictError("x"), locale="de-AT").message == "Konflikt."
    with pytest.raises(ConfigurationError, match="could not read"):
        register_messages("de", tmp_path / "missing.json")
    path.write_text("[1, 2]", "utf-8")
    with pytest.raises(ConfigurationError, match="JSON object"):
        register_messages("de", path)


@pytest.mark.parametrize(
    "template",
    [
        "{0.__class__}",
        "{field.__class__.__mro__}",
        "{field[0]}",
        "{field!r}",
        "{field:>99999}",
        "{}",
        "{0}",
        "unbalanced { brace",
        "line\nbreak",
        "carriage\rreturn",
        "x" * 1001,
    ],
)
def test_hostile_templates_are_refused(template: str) -> None:
    """Templates with attribute/index access, conversions, specs or line breaks are refused."""
    with pytest.raises(ConfigurationError):
        register_messages("en", {"validation_error": template})
    assert messages("en")["validation_error"] == "The value of the field '{field}' is not valid."


@pytest.mark.parametrize(
    ("locale", "entries"),
    [
        ("not a tag", {"x": "y"}),
        ("en", {"Bad Key": "y"}),
        ("en", {"ok": 3}),
        ("en", {3: "y"}),
    ],
)
def test_invalid_registrations_are_refused(locale: str, entries: Any) -> None:
    """Bad locale tags, keys and values raise ConfigurationError and change nothing."""
    before = dict(messages("en"))
    with pytest.raises(ConfigurationError):
        register_messages(locale, entries)
    assert dict(messages("en")) == before


def test_literal_braces_and_missing_values() -> None:
    """{{ and }} are literal braces; a template lacking a value falls back to the next key."""
    register_messages("en", {"json_hint": 'Send {{"a": 1}} for {field}.'})
    with_field = ValidationError("x", code="json_hint", field="body")
    assert handle(with_field).message == 'Send {"a": 1} for body.'
    without = ValidationError("x", code="json_hint")
    assert handle(without).message == messages("en")["category.validation"]
    empty = ValidationError("x", field="")
    assert handle(empty).message == messages("en")["category.validation"]


def test_messages_returns_a_read_only_view() -> None:
    """messages() gives templates, and changing the result is impossible."""
    view = messages("pt_br")
    with pytest.raises(TypeError):
        view["error"] = "x"  # type: ignore[index]
    assert messages("xx") == messages("en")
