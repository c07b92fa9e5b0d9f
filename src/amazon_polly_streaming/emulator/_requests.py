"""Request checks as the service makes them (sans-IO): method, path and headers in; a request or a refusal out.

The order is the service's: operation (path, method), authentication (SigV4),
authorization (IAM), then the operation's input (content type, parameters,
body). Parameter rules come from Polly's service model (botocore 1.44.8,
``botocore/data/polly/2016-06-10/service-2.json``, ``StartSpeechSynthesisStreamInput``):
``Engine``, ``OutputFormat`` and ``VoiceId`` are required headers;
``LanguageCode``, ``LexiconNames`` and ``SampleRate`` are optional, and AWS's
SDKs omit them when the caller does not set them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .._wire.request import DEFAULT_SAMPLE_RATES, OUTPUT_FORMATS, PATH
from .._wire.sigv4 import parse_authorization
from ..voices import Voice, find_voice
from ._auth import EventChain, verify_request
from ._config import EmulatorConfig
from ._errors import ServiceError, access_denied, throttling, validation

__all__ = [
    "LANGUAGE_CODES",
    "Parameters",
    "SynthesisRequest",
    "parse_request",
    "too_many_streams",
]

CONTENT_TYPE = "application/vnd.amazon.eventstream"

#: The model's ``LanguageCode`` enum, copied from botocore 1.44.8
#: ``botocore/data/polly/2016-06-10/service-2.json`` (shape ``LanguageCode``), in its order.
LANGUAGE_CODES: tuple[str, ...] = (
    "arb", "cmn-CN", "cy-GB", "da-DK", "de-DE", "en-AU", "en-GB", "en-GB-WLS", "en-IN", "en-US",
    "es-ES", "es-MX", "es-US", "fr-CA", "fr-FR", "is-IS", "it-IT", "ja-JP", "hi-IN", "ko-KR",
    "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sv-SE", "tr-TR", "en-NZ",
    "en-ZA", "ca-ES", "de-AT", "yue-CN", "ar-AE", "fi-FI", "en-IE", "nl-BE", "fr-BE", "cs-CZ",
    "de-CH", "en-SG",
)  # fmt: skip

#: The model's ``LexiconNameList``: at most 5 names, each ``[0-9A-Za-z]{1,20}``.
_MAX_LEXICONS = 5
_CUSTOM_VOICE_PREFIX = "vc-"


class Parameters(NamedTuple):
    """The synthesis headers as sent (None where absent)."""

    engine: str | None
    voice_id: str | None
    output_format: str | None
    sample_rate: str | None
    language_code: str | None
    lexicon_names: tuple[str, ...] | None

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, str]]) -> Parameters:
        first: dict[str, str] = {}
        lexicons: list[str] | None = None
        for name, value in headers:
            if name == "x-amzn-lexiconnames":
                # AWS's SDKs send the list three ways: joined with "," (ours),
                # with ", " (JS v3), or one header field per name (Go v2).
                lexicons = [*(lexicons or []), *(part.strip() for part in value.split(","))]
            else:
                first.setdefault(name, value)
        return cls(
            first.get("x-amzn-engine"),
            first.get("x-amzn-voiceid"),
            first.get("x-amzn-outputformat"),
            first.get("x-amzn-samplerate"),
            first.get("x-amzn-languagecode"),
            None if lexicons is None else tuple(lexicons),
        )


class SynthesisRequest(NamedTuple):
    """An accepted request: who sent it, how to verify its events, what to synthesize."""

    access_key_id: str | None
    chain: EventChain | None
    voice: Voice
    output_format: str
    sample_rate: int
    language_code: str | None
    lexicon_names: tuple[str, ...]


def _enum_error(value: str, member: str, field_name: str, allowed: Sequence[str]) -> ServiceError:
    # The wording of AWS's model validation (as in any Coral JSON service's ValidationException).
    return validation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{', '.join(allowed)}]",
        field_name,
    )


def _missing(member: str, field_name: str) -> ServiceError:
    return validation(
        f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null",
        field_name,
    )


def _check_parameters(params: Parameters) -> tuple[Voice, str, int, tuple[str, ...]] | ServiceError:
    if params.engine is None:
        return _missing("engine", "Engine")
    if params.engine != "generative":
        # The model: "Currently, only the generative engine is supported."
        return validation(f"Engine {params.engine} is not supported for this operation", "Engine")
    if params.voice_id is None:
        return _missing("voiceId", "VoiceId")
    voice = find_voice(params.voice_id)
    if voice is None:
        if params.voice_id.startswith(_CUSTOM_VOICE_PREFIX):
            # The model: "If no custom voice with the specified ID exists in your account and Region,
            # the request fails with ResourceNotFoundException" (HTTP 404).
            body = {
                "message": f"Voice {params.voice_id} does not exist",
                "resourceId": params.voice_id,
                "resourceType": "voice",
            }
            return ServiceError(404, "ResourceNotFoundException", body)
        return validation(f"Voice ID {params.voice_id} is not supported for the generative engine", "VoiceId")
    fmt = params.output_format
    if fmt is None:
        return _missing("outputFormat", "OutputFormat")
    if fmt not in OUTPUT_FORMATS:
        # "json" is in the model's enum, but the operation "does not support JSON speech marks".
        return validation(f"Output format {fmt} is not supported", "OutputFormat")
    # Absent, the format's default: the model's SampleRate documentation (``_wire.request``).
    rate = params.sample_rate or DEFAULT_SAMPLE_RATES[fmt]
    if rate not in OUTPUT_FORMATS[fmt]:
        return validation(f"Sample rate {rate} is not valid for output format {fmt}", "SampleRate")
    language = params.language_code
    if language is not None:
        if language not in LANGUAGE_CODES:
            return _enum_error(language, "languageCode", "LanguageCode", LANGUAGE_CODES)
        # The model: LanguageCode matters "only when using a bilingual voice"; a monolingual voice ignores it.
        if voice.additional_language_codes and language not in voice.language_codes:
            return validation(f"Voice {voice.voice_id} does not support language {language}", "LanguageCode")
    lexicons = params.lexicon_names or ()
    if params.lexicon_names is not None and (
        len(lexicons) > _MAX_LEXICONS or not all(1 <= len(n) <= 20 and n.isascii() and n.isalnum() for n in lexicons)
    ):
        return validation("Lexicon names must be up to 5 names of 1-20 letters or digits", "LexiconNames")
    return voice, fmt, int(rate), lexicons


def parse_request(
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    has_body: bool,
    config: EmulatorConfig,
    now: float,
) -> SynthesisRequest | ServiceError:
    """Check one request; ``headers`` are all its fields (lower-case names, pseudo-headers included)."""
    path_only, _, query = path.partition("?")
    if path_only != PATH:
        return ServiceError(404, "UnknownOperationException", {"message": f"Unknown operation for path {path_only}"})
    if method != "POST":
        return ServiceError(405, "MethodNotAllowedException", {"message": f"Method {method} is not allowed"})
    access_key_id: str | None = None
    chain: EventChain | None = None
    if config.verify_signatures:
        verified = verify_request(
            method=method,
            path=path_only,
            query=query,
            headers=headers,
            credentials=config.credentials,
            session_tokens=config.session_tokens,
            clock_skew=config.clock_skew,
            now=now,
        )
        if isinstance(verified, ServiceError):
            return verified
        access_key_id, chain = verified
    else:
        # Signatures unchecked: who signed is still what the authorization header says.
        authorization = parse_authorization(next((v for n, v in headers if n == "authorization"), ""))
        access_key_id = authorization.access_key_id if authorization is not None else None
    if access_key_id in config.unauthorized_keys:
        return access_denied(config.unauthorized_error)
    content_type = next((value for name, value in headers if name == "content-type"), "")
    if not content_type.startswith(CONTENT_TYPE):
        return validation(f"Content-Type must be {CONTENT_TYPE}")
    params = Parameters.from_headers(headers)
    checked = _check_parameters(params)
    if isinstance(checked, ServiceError):
        return checked
    if not has_body:
        return validation("The request has no event stream body")
    voice, fmt, rate, lexicons = checked
    return SynthesisRequest(access_key_id, chain, voice, fmt, rate, params.language_code, lexicons)


def too_many_streams() -> ServiceError:
    """The refusal of a stream over the service's concurrency limit."""
    return throttling("Too many concurrent streams", "ConcurrentStreamsExceeded", "synthesisStream")
