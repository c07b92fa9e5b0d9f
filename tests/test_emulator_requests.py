"""The emulator's request checks, sans-IO (``_requests.parse_request``), and its data against Polly's service model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming._wire.request import DEFAULT_SAMPLE_RATES
from amazon_polly_streaming.emulator import EmulatorConfig
from amazon_polly_streaming.emulator._errors import ServiceError
from amazon_polly_streaming.emulator._events import CloseInput, InboundEvents, TextInput
from amazon_polly_streaming.emulator._faults import DEFAULT_PHASES, FAULT_KINDS, PHASES, parse_directives
from amazon_polly_streaming.emulator._requests import (
    LANGUAGE_CODES,
    SynthesisRequest,
    parse_request,
)
from amazon_polly_streaming.voices import VOICES, find_voice
from emulator_signing import BEFORE_MIDNIGHT, signed_request

pytestmark = pytest.mark.timeout(30)

PATH = "/v1/synthesisStream"
REQUIRED = {"x-amzn-engine": "generative", "x-amzn-voiceid": "Matthew", "x-amzn-outputformat": "pcm"}


def _model() -> dict[str, Any]:
    """Polly's service model from the installed botocore (gzipped in recent releases)."""
    botocore = pytest.importorskip("botocore")
    data = Path(botocore.__file__).parent / "data" / "polly" / "2016-06-10"
    if (data / "service-2.json.gz").exists():
        text = gzip.decompress((data / "service-2.json.gz").read_bytes())
    elif (data / "service-2.json").exists():
        text = (data / "service-2.json").read_bytes()
    else:
        pytest.skip("botocore has no Polly model")
    model: dict[str, Any] = json.loads(text)
    return model


def parse(
    extra: list[tuple[str, str]] | None = None,
    *,
    drop: tuple[str, ...] = (),
    method: str = "POST",
    path: str = PATH,
    has_body: bool = True,
    **config: Any,
) -> SynthesisRequest | ServiceError:
    headers = [(":method", method), (":path", path), ("content-type", "application/vnd.amazon.eventstream")]
    headers += [(name, value) for name, value in REQUIRED.items() if name not in drop]
    headers += extra or []
    config.setdefault("verify_signatures", False)
    return parse_request(method, path, headers, has_body=has_body, config=EmulatorConfig(**config), now=0.0)


def refused(result: SynthesisRequest | ServiceError) -> ServiceError:
    assert isinstance(result, ServiceError), result
    return result


def accepted(result: SynthesisRequest | ServiceError) -> SynthesisRequest:
    assert isinstance(result, SynthesisRequest), result
    return result


# ------------------------------------------------------------------ the operation and its parameters


def test_operation_and_body() -> None:
    assert refused(parse(path="/v1/speech")).status == 404
    assert refused(parse(method="PUT")).status == 405
    error = refused(parse(has_body=False))
    assert (error.status, error.error_type) == (400, "ValidationException")


@pytest.mark.parametrize(
    ("drop", "field"),
    [("x-amzn-engine", "Engine"), ("x-amzn-voiceid", "VoiceId"), ("x-amzn-outputformat", "OutputFormat")],
)
def test_required_parameters(drop: str, field: str) -> None:
    error = refused(parse(drop=(drop,)))
    assert error.body["fields"][0]["name"] == field
    assert "must not be null" in error.message


def test_optional_parameters_may_be_absent_and_take_the_formats_default_rate() -> None:
    # AWS's SDKs send SampleRate, LanguageCode and LexiconNames only when the caller sets them.
    request = accepted(parse())
    assert (request.sample_rate, request.language_code, request.lexicon_names) == (16000, None, ())
    for fmt, rate in DEFAULT_SAMPLE_RATES.items():
        extra = [("x-amzn-outputformat", fmt)]
        request = accepted(parse(extra, drop=("x-amzn-outputformat",)))
        assert request.sample_rate == int(rate)
    # Where the defaults come from: the model's SampleRate documentation.
    documentation = _model()["shapes"]["SynthesizeSpeechInput"]["members"]["SampleRate"]["documentation"]
    assert 'The default value for generative voices is "24000"' in documentation
    assert 'Valid values for pcm are "8000" and "16000" The default value is "16000"' in documentation
    assert 'Valid value for ogg_opus is "48000"' in documentation
    assert 'Valid value for mu-law and a-law is "8000"' in documentation


def test_language_codes_are_the_models_enum() -> None:
    model = _model()
    assert list(LANGUAGE_CODES) == model["shapes"]["LanguageCode"]["enum"]
    for code in ("arb", "en-GB-WLS", "yue-CN", "cmn-CN", "en-US"):
        assert accepted(parse([("x-amzn-languagecode", code)])).language_code == code
    error = refused(parse([("x-amzn-languagecode", "en-us")]))
    assert error.body["fields"][0]["name"] == "LanguageCode"
    assert "enum value set: [arb, cmn-CN," in error.message


def test_language_code_against_the_voice() -> None:
    # A bilingual voice speaks only its languages; a monolingual one ignores LanguageCode (the model:
    # "Specify this parameter only when using a bilingual voice").
    assert accepted(parse([("x-amzn-voiceid", "Kajal"), ("x-amzn-languagecode", "hi-IN")], drop=("x-amzn-voiceid",)))
    error = refused(parse([("x-amzn-voiceid", "Kajal"), ("x-amzn-languagecode", "fr-FR")], drop=("x-amzn-voiceid",)))
    assert error.body["fields"][0]["name"] == "LanguageCode"
    assert accepted(parse([("x-amzn-languagecode", "fr-FR")]))


@pytest.mark.parametrize(
    "fields",
    [
        [("x-amzn-lexiconnames", "alpha,beta,gamma")],  # ours
        [("x-amzn-lexiconnames", "alpha, beta, gamma")],  # AWS's JS SDK v3
        [("x-amzn-lexiconnames", "alpha"), ("x-amzn-lexiconnames", "beta"), ("x-amzn-lexiconnames", "gamma")],  # Go v2
    ],
    ids=["comma", "comma-space", "one-field-each"],
)
def test_lexicon_names_in_every_sdks_form(fields: list[tuple[str, str]]) -> None:
    assert accepted(parse(fields)).lexicon_names == ("alpha", "beta", "gamma")


def test_lexicon_names_follow_the_model() -> None:
    for value in ("a,b,c,d,e,f", "bad-name", "x" * 21, "alpha,,beta"):
        assert refused(parse([("x-amzn-lexiconnames", value)])).body["fields"][0]["name"] == "LexiconNames"


def test_an_unknown_custom_voice_is_not_found() -> None:
    # The model: an unknown custom voice id (as CreateVoice returns, "vc-...") is ResourceNotFoundException.
    error = refused(parse([("x-amzn-voiceid", "vc-9a8fa85dd3")], drop=("x-amzn-voiceid",)))
    assert (error.status, error.error_type, error.body["resourceType"]) == (404, "ResourceNotFoundException", "voice")
    error = refused(parse([("x-amzn-voiceid", "Joey")], drop=("x-amzn-voiceid",)))  # in the enum, not generative
    assert error.body["fields"][0]["name"] == "VoiceId"


# ------------------------------------------------------------------ who may call


def _signed(unauthorized_error: str | None = None) -> SynthesisRequest | ServiceError:
    fields, _ = signed_request()
    options: dict[str, Any] = {"unauthorized_keys": {"AKIDEXAMPLE"}}
    if unauthorized_error is not None:
        options["unauthorized_error"] = unauthorized_error
    config = EmulatorConfig(**options)
    return parse_request("POST", PATH, fields, has_body=True, config=config, now=BEFORE_MIDNIGHT)


def test_a_key_without_the_permission_is_refused_as_the_guide_says_by_default() -> None:
    error = refused(_signed())
    assert (error.status, error.error_type) == (400, "ValidationException")
    assert "polly:StartSpeechSynthesisStream" in error.message


def test_a_key_without_the_permission_can_be_refused_as_iam_does() -> None:
    # Polly's "Common errors": AccessDeniedException is HTTP 400.
    error = refused(_signed("AccessDeniedException"))
    assert (error.status, error.error_type) == (400, "AccessDeniedException")
    assert "not authorized to perform: polly:StartSpeechSynthesisStream" in error.message
    fields, _ = signed_request(secret="any secret at all")
    unchecked = EmulatorConfig(verify_signatures=False, unauthorized_keys={"AKIDEXAMPLE"})
    assert refused(parse_request("POST", PATH, fields, has_body=True, config=unchecked, now=0.0)).status == 400
    with pytest.raises(ValueError, match="unauthorized_error"):
        EmulatorConfig(unauthorized_error="Forbidden")


# ------------------------------------------------------------------ voices


def test_voices_are_generative_and_in_the_model() -> None:
    model = _model()
    voice_ids = set(model["shapes"]["VoiceId"]["enum"])
    for voice in VOICES:
        assert voice.voice_id in voice_ids, voice
        assert set(voice.language_codes) <= set(LANGUAGE_CODES), voice
    added = ("Brian", "Aria", "Jasmine", "Tiffany", "Ambre", "Florian", "Sabrina", "Lennart", "Beatrice", "Lorenzo")
    for voice_id in (*added, "Lisa", "Niamh"):
        assert find_voice(voice_id) is not None, voice_id
    assert find_voice("Lisa").language_code == "nl-BE"  # type: ignore[union-attr]
    assert find_voice("Niamh").language_code == "en-IE"  # type: ignore[union-attr]
    # The guide: "Amazon Polly currently offers 43 voices in a generative variant."
    assert len(VOICES) == len({v.voice_id for v in VOICES}) == 43
    for not_generative in ("Emma", "Arthur", "Nicole", "Russell", "Aditi", "Raveena", "Joey"):
        assert find_voice(not_generative) is None


# ------------------------------------------------------------------ text events (sans-IO)


def _events(*payloads: tuple[str, bytes], message_type: str = "event") -> list[object]:
    from amazon_polly_streaming._wire.eventstream import encode_headers, encode_message

    body = b""
    for event_type, payload in payloads:
        inner = encode_message(encode_headers(((":message-type", message_type), (":event-type", event_type))), payload)
        body += encode_message(b"", inner)
    return list(InboundEvents(None).feed(body))


def _text(**fields: Any) -> tuple[str, bytes]:
    return ("TextEvent", json.dumps(fields).encode())


def test_text_events_are_read_as_the_model_says() -> None:
    events = _events(
        _text(Text="Hello."),
        _text(Text="<speak>Hi</speak>", TextType="ssml", FlushStreamConfiguration={"Force": True}),
        ("CloseStreamEvent", b"{}"),
    )
    assert events == [TextInput("Hello.", False, False), TextInput("<speak>Hi</speak>", True, True), CloseInput()]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_text(Text="Hi", TextType="markdown"), "TextType"),
        (_text(Text="<speak>Hi", TextType="ssml"), "Text"),
        (_text(Text="<p>Hi</p>", TextType="ssml"), "Text"),
        (_text(Text="<!DOCTYPE x [<!ENTITY a 'b'>]><speak>&a;</speak>", TextType="ssml"), "Text"),
        (_text(Text="x" * 3001), "Text"),
        (_text(Text="<speak>" + "<break/>" * 800 + "</speak>", TextType="ssml"), "Text"),
        (_text(Text="<speak>" + "x" * 3001 + "</speak>", TextType="ssml"), "Text"),
        (_text(Text=7), "Text"),
    ],
    ids=["text-type", "unclosed-ssml", "not-speak", "entity", "billed", "total", "ssml-billed", "not-a-string"],
)
def test_invalid_text_events_are_validation_exceptions(event: tuple[str, bytes], field: str) -> None:
    (error,) = _events(event)
    assert isinstance(error, ServiceError)
    assert (error.status, error.error_type) == (400, "ValidationException")
    assert error.body["fields"][0]["name"] == field


def test_the_limits_are_per_event_and_ssml_tags_are_not_billed() -> None:
    long_ssml = "<speak>" + "<break time='1ms'/>" * 100 + "x" * 3000 + "</speak>"
    assert len(long_ssml) <= 6000
    assert _events(_text(Text="x" * 3000), _text(Text="y" * 3000)) == [
        TextInput("x" * 3000, False, False),
        TextInput("y" * 3000, False, False),
    ]
    assert _events(_text(Text=long_ssml, TextType="ssml")) == [TextInput(long_ssml, True, False)]
    # Characters as the service counts them: UTF-16 code units (an emoji is two).
    assert _events(_text(Text="\U0001f600" * 1500)) == [TextInput("\U0001f600" * 1500, False, False)]
    (error,) = _events(_text(Text="\U0001f600" * 1501))
    assert isinstance(error, ServiceError)


def test_an_unknown_message_or_event_type_is_an_invalid_inbound_event() -> None:
    for events in (_events(_text(Text="Hi"), message_type="exception"), _events(("AudioEvent", b""))):
        (error,) = events
        assert isinstance(error, ServiceError)
        assert error.body["reason"] == "invalidInboundEvent"


# ------------------------------------------------------------------ directives


def test_an_invalid_directive_says_what_is_valid() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'bogus'; one of corrupt_crc, drop,"):
        parse_directives("{{fault:bogus}} Hi")
    with pytest.raises(ValueError, match=f"unknown phase 'soon'; one of {', '.join(PHASES)}"):
        parse_directives("{{fault:drop@soon}} Hi")
    with pytest.raises(ValueError, match="audio_bytes"):
        parse_directives("{{audio_bytes:-4}}")
    assert set(DEFAULT_PHASES) == set(FAULT_KINDS)
