"""The StartSpeechSynthesisStream request, sans-IO: arguments, signed headers, text events.

Everything between "the caller's arguments" and "bytes on an HTTP/2 stream"
that needs no socket and no clock: argument validation, the signed request
headers, and the encoded text events. The server's side of the conversation
is parsed in ``_response``.

Rules come from Polly's service model (botocore 1.44.5,
``botocore/data/polly/2016-06-10/service-2.json``, operation
``StartSpeechSynthesisStream``) and the Polly developer guide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring
from typing import NamedTuple

from . import sigv4
from .event_signer import EventSigner, HmacKey, remember_payload_hash
from .eventstream import encode_headers, encode_message

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    # The type only: the credentials module also resolves them (threads, a clock), which is not the wire's job.
    from ..credentials import Credentials

__all__ = [
    "CLOSE_STREAM_EVENT",
    "DEFAULT_SAMPLE_RATES",
    "MAX_BILLED_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TEXT_EVENT_CHARS",
    "OUTPUT_FORMATS",
    "PATH",
    "RequestSigner",
    "SignedRequest",
    "SynthesisParams",
    "billed_length",
    "split_text",
    "synthesis_params",
    "text_event",
    "text_events",
    "utf16_length",
]

PATH = "/v1/synthesisStream"
SERVICE = "polly"
EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
#: One TextEvent carries at most 6,000 characters, of which at most 3,000 are
#: billed (SSML tags are not billed): the Polly developer guide's limits for
#: bidirectional streaming. Plain text is all billed, so it goes in events of
#: at most 3,000 characters.
MAX_TEXT_EVENT_CHARS = 6000
MAX_BILLED_CHARS = 3000
#: The most characters (UTF-16 units) one text may hold. Polly takes any
#: amount of text per stream, but a stream lives at most 10 minutes: about
#: 9,000 characters of English speech at 15 a second, fewer in CJK. 100,000 is
#: Polly's own cap for its long-text operation (StartSpeechSynthesisTask,
#: service-2.json's TextLengthExceededException: "no more than 100,000 can be
#: billed characters"), over ten times what one stream can speak: a text
#: beyond it is a mistake, refused before any request and before the work of
#: preparing it.
MAX_TEXT_CHARS = 100_000
#: A text of at most this many code points fits whatever they are (two UTF-16
#: units each at most): only longer ones are measured.
_ALWAYS_FITS = MAX_TEXT_CHARS // 2
MAX_LEXICONS = 5

#: Valid sample rates (Hz, as strings) per output format, and the default the
#: service uses when the request names none (the model's ``SampleRate``
#: documentation: mp3/ogg_vorbis 24000 for generative voices, pcm 16000,
#: ogg_opus 48000, mulaw/alaw 8000).
OUTPUT_FORMATS: dict[str, frozenset[str]] = {
    "mp3": frozenset({"8000", "16000", "22050", "24000", "44100", "48000"}),
    "ogg_vorbis": frozenset({"8000", "16000", "22050", "24000", "44100", "48000"}),
    "pcm": frozenset({"8000", "16000"}),
    "ogg_opus": frozenset({"48000"}),
    "mulaw": frozenset({"8000"}),
    "alaw": frozenset({"8000"}),
}
DEFAULT_SAMPLE_RATES: dict[str, str] = {
    "mp3": "24000",
    "ogg_vorbis": "24000",
    "pcm": "16000",
    "ogg_opus": "48000",
    "mulaw": "8000",
    "alaw": "8000",
}
TEXT_TYPES = ("text", "ssml")


# --------------------------------------------------------------------------- request


class SynthesisParams(NamedTuple):
    """Validated synthesis settings, as sent in the request headers."""

    voice_id: str
    engine: str
    language_code: str | None
    output_format: str
    sample_rate: str
    lexicon_names: tuple[str, ...] = ()


def _header_value(name: str, value: object) -> str:
    """A value that may go into an HTTP header as is: visible ASCII, nothing else.

    CR, LF, NUL, spaces or non-ASCII would reach the wire byte for byte (and
    could split or smuggle headers), so they are refused before any I/O.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    # Visible ASCII is "!" to "~": printable ASCII (" " to "~") but the space; three C calls, not a loop.
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ValueError(f"{name} may hold only visible ASCII characters, not {value!r}")
    return value


_LEXICON_NAME = re.compile(r"[0-9A-Za-z]{1,20}")  # the model's LexiconName pattern


def synthesis_params(
    *,
    voice_id: object,
    engine: object = "generative",
    language_code: object = None,
    output_format: object = "mp3",
    sample_rate: object = None,
    lexicon_names: Iterable[str] | None = None,
) -> SynthesisParams:
    """Check the caller's arguments; raise ``ValueError``/``TypeError`` before any I/O.

    ``language_code`` stays None unless given: the model says to specify it
    only for bilingual voices, and AWS's SDKs send the header only when the
    caller sets it. ``sample_rate`` None is the format's documented default.
    """
    voice = _header_value("voice_id", voice_id)
    engine_name = _header_value("engine", engine)
    language = None if language_code is None else _header_value("language_code", language_code)
    fmt = _header_value("output_format", output_format)
    rates = OUTPUT_FORMATS.get(fmt)
    if rates is None:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r}")
    if sample_rate is None:
        sample_rate = DEFAULT_SAMPLE_RATES[fmt]
    elif isinstance(sample_rate, int) and not isinstance(sample_rate, bool):
        sample_rate = str(sample_rate)
    rate = _header_value("sample_rate", sample_rate)
    if rate not in rates:
        raise ValueError(f"sample_rate {rate!r} is not valid for {fmt}; use one of {', '.join(sorted(rates, key=int))}")
    lexicons: tuple[str, ...] = ()
    if lexicon_names is not None:
        if isinstance(lexicon_names, str):
            lexicon_names = [lexicon_names]
        lexicons = tuple(lexicon_names)
        if len(lexicons) > MAX_LEXICONS:
            raise ValueError(f"at most {MAX_LEXICONS} lexicons may be applied")
        for name in lexicons:
            if not isinstance(name, str) or _LEXICON_NAME.fullmatch(name) is None:
                raise ValueError(f"lexicon names are 1-20 ASCII letters or digits, not {name!r}")
    return SynthesisParams(voice, engine_name, language, fmt, rate, lexicons)


class SignedRequest:
    """A stream's signed request headers and the signer of its events.

    The headers hold the signature and maybe a session token: this object's
    ``repr`` shows neither, and it is not a sequence, so error reporters that
    walk lists and tuples in traceback locals stop at its ``repr``.
    """

    __slots__ = ("_headers", "event_signer")

    def __init__(self, headers: Sequence[tuple[str, str]], event_signer: EventSigner) -> None:
        self._headers = headers
        self.event_signer = event_signer

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._headers)

    def __repr__(self) -> str:
        return f"SignedRequest(<{len(self._headers)} headers, redacted>)"

    def same_headers(self, other: SignedRequest) -> bool:
        """Whether both carry the very same headers: the signer made them once for the same inputs and second."""
        return self._headers is other._headers


class RequestSigner:
    """Signs the requests of one region, keeping the signing key of the current day.

    Only the request's own HMAC is computed per stream; each stream's event
    signer asks this object for the key of its envelopes' dates. Signing is
    deterministic and dated to the second, so a request identical to the last
    one within the same second (a busy server's streams) reuses its headers
    and signature: the same bytes, computed once.
    """

    __slots__ = ("_key_cache", "_last", "region")

    def __init__(self, region: str) -> None:
        self.region = region
        # (day, secret, signing key, the key ready for the envelopes' HMACs)
        self._key_cache: tuple[str, str, bytes, HmacKey] | None = None
        # (everything signed, headers, signature, scope, the envelopes' key)
        self._last: tuple[tuple[object, ...], tuple[tuple[str, str], ...], bytes, str, HmacKey] | None = None

    def __repr__(self) -> str:
        return f"RequestSigner(region={self.region!r})"

    def _signing_key(self, secret: str, datestamp: str) -> tuple[bytes, HmacKey]:
        cached = self._key_cache
        if cached is not None and cached[0] == datestamp and cached[1] == secret:
            return cached[2], cached[3]
        key = sigv4.derive_signing_key(secret, datestamp, self.region, SERVICE)
        mac = HmacKey(key)
        self._key_cache = (datestamp, secret, key, mac)
        return key, mac

    def sign(
        self,
        params: SynthesisParams,
        *,
        authority: str,
        credentials: Credentials,
        amz_date: str,
        user_agent: str,
    ) -> SignedRequest:
        """The HTTP/2 request headers (pseudo-headers first) and the stream's event signer.

        ``amz_date`` is the signing time as ``YYYYMMDDTHHMMSSZ``.
        """
        secret = credentials.secret_access_key
        signed_inputs = (
            params,
            authority,
            amz_date,
            user_agent,
            credentials.access_key_id,
            secret,
            credentials.session_token,
        )
        last = self._last
        if last is not None and last[0] == signed_inputs:
            _, headers, signature, scope, key = last
        else:
            headers, signature, scope, key = self._sign(params, authority, credentials, amz_date, user_agent)
            self._last = (signed_inputs, headers, signature, scope, key)

        def key_for(day: str) -> HmacKey:
            return self._signing_key(secret, day)[1]

        return SignedRequest(headers, EventSigner(key, scope, signature, key_for=key_for))

    def _sign(
        self, params: SynthesisParams, authority: str, credentials: Credentials, amz_date: str, user_agent: str
    ) -> tuple[tuple[tuple[str, str], ...], bytes, str, HmacKey]:
        signed = [
            ("content-type", EVENT_STREAM_CONTENT_TYPE),
            ("host", authority),
            ("x-amz-content-sha256", sigv4.STREAMING_PAYLOAD),
            ("x-amz-date", amz_date),
            ("x-amzn-engine", params.engine),
            ("x-amzn-outputformat", params.output_format),
            ("x-amzn-samplerate", params.sample_rate),
            ("x-amzn-voiceid", params.voice_id),
        ]
        if params.language_code is not None:
            signed.append(("x-amzn-languagecode", params.language_code))
        if params.lexicon_names:
            signed.append(("x-amzn-lexiconnames", ",".join(params.lexicon_names)))
        if credentials.session_token:
            signed.append(("x-amz-security-token", credentials.session_token))
        datestamp = amz_date[:8]
        scope = sigv4.credential_scope(datestamp, self.region, SERVICE)
        key, mac = self._signing_key(credentials.secret_access_key, datestamp)
        auth = sigv4.sign_request(
            method="POST",
            path=PATH,
            headers=signed,
            payload_hash=sigv4.STREAMING_PAYLOAD,
            access_key_id=credentials.access_key_id,
            signing_key=key,
            scope=scope,
            amz_date=amz_date,
        )
        # HTTP/2 carries the host as :authority, exactly once; "host" is only
        # part of the signature.
        headers = [(":method", "POST"), (":scheme", "https"), (":path", PATH), (":authority", authority)]
        headers.extend(item for item in signed if item[0] != "host")
        headers.append(("authorization", auth.header))
        headers.append(("user-agent", user_agent))
        return tuple(headers), auth.signature, scope, mac

    def request_headers(
        self,
        params: SynthesisParams,
        *,
        authority: str,
        credentials: Credentials,
        amz_date: str,
        user_agent: str,
    ) -> tuple[list[tuple[str, str]], EventSigner]:
        """:meth:`sign`, as a plain header list and the event signer."""
        request = self.sign(
            params, authority=authority, credentials=credentials, amz_date=amz_date, user_agent=user_agent
        )
        return list(request), request.event_signer


# ------------------------------------------------------------------------ text events

_TEXT_EVENT_HEADERS = encode_headers(
    ((":event-type", "TextEvent"), (":content-type", "application/json"), (":message-type", "event")),
)
#: The encoded (unsigned, inner) CloseStreamEvent.
CLOSE_STREAM_EVENT = encode_message(
    encode_headers(
        ((":event-type", "CloseStreamEvent"), (":content-type", "application/json"), (":message-type", "event")),
    ),
    b"{}",
)
remember_payload_hash(CLOSE_STREAM_EVENT)  # every stream's last event but the empty one
#: json.dumps's own quoting of a string with ``ensure_ascii=False`` (``"``,
#: ``\\`` and control characters escaped), without the encoder json.dumps
#: builds on every call that passes options: the body below is exactly
#: ``json.dumps(body, ensure_ascii=False, separators=(",", ":"))``.
_quote = encode_basestring


def text_event(text: str, *, text_type: str | None = None, flush: bool = False) -> bytes:
    """The encoded (unsigned, inner) TextEvent carrying ``text``."""
    body = '{"Text":' + _quote(text)
    if text_type is not None:
        body += ',"TextType":' + _quote(text_type)
    if flush:
        body += ',"FlushStreamConfiguration":{"Force":true}'
    return encode_message(_TEXT_EVENT_HEADERS, (body + "}").encode())


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as a Java service counts characters (emoji count twice)."""
    if text.isascii():
        return len(text)
    # In C, not a Python loop per character (a lone surrogate counts one).
    return len(text.encode("utf-16-le", "surrogatepass")) >> 1


_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z]+);")


def billed_length(text: str, *, ssml: bool) -> int:
    """Characters Polly bills for ``text``: all of plain text; SSML without its tags."""
    if ssml:
        text = _ENTITY.sub("_", _TAG.sub("", text))
    return utf16_length(text)


_SENTENCE_END = re.compile(r"[.!?;:。！？][\"')\]]*\s+")
_SPACE = re.compile(r"\s+")


def _cut_point(text: str, start: int, end: int) -> int:
    """Where to end a piece within ``text[start:end]``: after a sentence end or white space if one is near."""
    near = max(start + 1, end - (end - start) // 4)
    best = -1
    for match in _SENTENCE_END.finditer(text, near, end):
        best = match.end()
    if best < 0:
        for match in _SPACE.finditer(text, near, end):
            best = match.end()
    return best if best > start else end


def split_text(text: str, limit: int = MAX_BILLED_CHARS) -> list[str]:
    """Cut plain ``text`` into pieces of at most ``limit`` UTF-16 units.

    Polly reassembles text across events, so any cut is correct; cutting after
    a sentence end or white space where one is near keeps words whole. Cuts
    fall between code points, never inside a surrogate pair. Linear in the
    length of ``text``: each piece is measured, never the rest of the text.
    """
    remaining = utf16_length(text)
    if remaining <= limit:
        return [text]
    pieces = []
    start = 0
    size = len(text)
    narrow = text.isascii()  # one unit per code point: no measuring at all
    while remaining > limit:
        end = min(start + limit, size)
        if not narrow:
            while (units := utf16_length(text[start:end])) > limit:
                # Each astral character takes two units: shrink until it fits.
                end -= (units - limit + 1) // 2
        end = _cut_point(text, start, end)
        piece = text[start:end]
        pieces.append(piece)
        remaining -= len(piece) if narrow else utf16_length(piece)
        start = end
    pieces.append(text[start:])
    return pieces


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text holds a lone surrogate ({text[exc.start]!r} at {exc.start}), which is not valid Unicode text"
        ) from None


def _check_size(text: str) -> None:
    # Code points first: a huge text is refused without reading it.
    size = len(text) if len(text) > MAX_TEXT_CHARS else utf16_length(text)
    if size > MAX_TEXT_CHARS:
        raise ValueError(
            f"text of {size:,} characters is far more than one stream can speak: a stream lasts at most 10 minutes "
            f"(about 9,000 characters of speech), and one text may hold at most {MAX_TEXT_CHARS:,} characters; "
            "send it over several streams, a few paragraphs each"
        )


def text_events(text: str, *, text_type: str | None = None, flush: bool = False) -> list[bytes]:
    """The encoded TextEvents that carry ``text``: checked, and split where it is plain text.

    Raises ``TypeError``/``ValueError`` for what the service would refuse: a
    lone surrogate, or an SSML document over the per-event limits (a document
    must be whole inside one event, so it cannot be split).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if text_type != "ssml" and len(text) <= MAX_BILLED_CHARS and text.isascii():
        # The usual short plain text: encodable, and one event holds it whole.
        return [text_event(text, text_type=text_type, flush=flush)]
    if len(text) > _ALWAYS_FITS:
        _check_size(text)
    _check_encodable(text)
    if text_type == "ssml":
        total, billed = utf16_length(text), billed_length(text, ssml=True)
        if total > MAX_TEXT_EVENT_CHARS or billed > MAX_BILLED_CHARS:
            raise ValueError(
                f"an SSML document must fit in one event: at most {MAX_TEXT_EVENT_CHARS} characters with tags "
                f"and {MAX_BILLED_CHARS} without (this one has {total} and {billed}); split it into several documents"
            )
        return [text_event(text, text_type=text_type, flush=flush)]
    pieces = split_text(text)
    last = len(pieces) - 1
    return [text_event(piece, text_type=text_type, flush=flush and i == last) for i, piece in enumerate(pieces)]
