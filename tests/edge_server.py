"""A local server that speaks edge-tts's wire protocol, with real speech, scriptable failures.

Point the real ``edge_tts`` client at it (``GREETKIT_EDGE_URL=server.url``) and it behaves like
Microsoft's read-aloud service as edge-tts 7.3 sees it:

* handshake ``GET .../edge/v1?TrustedClientToken=…&ConnectionId=…&Sec-MS-GEC=…`` upgraded to a
  WebSocket. The ``Sec-MS-GEC`` token is checked against the server's clock (optionally offset
  with ``clock_offset``); a wrong one gets ``403`` with a ``Date`` header, from which the client
  corrects its clock skew and retries once, exactly as against the real service;
* the client sends text frames ``Path:speech.config`` then ``Path:ssml``; the server answers
  ``Path:turn.start``, ``Path:response``, ``Path:audio.metadata`` frames (``SentenceBoundary`` or
  ``WordBoundary``, ``Offset``/``Duration`` in 100 ns ticks) interleaved with binary audio
  frames (2-byte big-endian header length, a CRLF-terminated header block with ``Path:audio`` and
  ``Content-Type:audio/mpeg``, then MP3 bytes), an empty binary ``Path:audio`` frame without a
  Content-Type, and ``Path:turn.end``;
* the audio is real speech: the SSML text rendered by greetkit's espeak-ng engine (the locale of
  the requested voice picks the espeak voice; ``rate``/``pitch``/``volume`` are honoured),
  resampled to 24 kHz with soxr and encoded by libsndfile as header-less MPEG-2 Layer III,
  48 kbit/s CBR, mono, like the service's ``audio-24khz-48kbitrate-mono-mp3``. Boundaries are
  measured on that audio (sentence by sentence; words share their sentence's span by length);
* ``GET .../voices/list?trustedclienttoken=…`` returns a JSON voice list shaped like the real one.

Each handshake consumes the next scripted :class:`Step` (then ``default`` applies)::

    with EdgeServer(max_connections=4) as server:
        server.script(Step.http(503), Step.http(503))   # two failures, then normal audio
        os.environ["GREETKIT_EDGE_URL"] = server.url
        ...
        assert server.max_concurrent <= 4

The server runs its own event loop in a daemon thread, so synchronous code (``greetkit build``)
and async tests can both use it. Everything it saw is recorded in :attr:`EdgeServer.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import io
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web

from greetkit.engines.base import RenderRequest
from greetkit.engines.edge import KNOWN_VOICES

__all__ = ["EdgeServer", "RequestRecord", "Step", "serving"]

TRUSTED_CLIENT_TOKEN = "6A5AA1D4EAFF4E9FB37E23D68491D6F4"
BASE_PATH = "/consumer/speech/synthesize/readaloud"
SAMPLE_RATE = 24000
#: libsndfile's MPEG compression level that selects 48 kbit/s for 24 kHz mono (bitrate index 6).
_MP3_LEVEL_48K = 0.75
_TICKS = 10_000_000
_SILENCE = 10 ** (-45 / 20)  # speech extent: first/last sample above -45 dBFS
_SSML_NS = "{http://www.w3.org/2001/10/synthesis}"
_VOICE_NAME = re.compile(r"^Microsoft Server Speech Text to Speech Voice \((.+), (.+)\)$")
_SENTENCES = re.compile(r"(?<=[。！？；.!?;])")

StepKind = Literal["ok", "http", "close", "no_audio", "unknown_path"]


@dataclass(frozen=True)
class Step:
    """What the server does with one handshake. Build them with the class methods."""

    kind: StepKind = "ok"
    #: HTTP status for ``http`` steps.
    status: int = 200
    #: For ``close``: the share of the audio bytes sent before the server closes (no turn.end).
    fraction: float = 0.5
    #: Seconds to wait after the SSML arrives before answering (slow service).
    delay: float = 0.0

    @classmethod
    def ok(cls, delay: float = 0.0) -> Step:
        """Normal audio, optionally after ``delay`` seconds."""
        return cls("ok", delay=delay)

    @classmethod
    def http(cls, status: int) -> Step:
        """Refuse the handshake with ``status`` (403, 429, 503 ...) and a Date header."""
        return cls("http", status=status)

    @classmethod
    def close_mid_stream(cls, fraction: float = 0.5) -> Step:
        """Send metadata and ``fraction`` of the audio, then close without ``turn.end``."""
        return cls("close", fraction=fraction)

    @classmethod
    def no_audio(cls) -> Step:
        """turn.start, response, turn.end and no audio (what the service does for '!!!')."""
        return cls("no_audio")

    @classmethod
    def unknown_path(cls) -> Step:
        """A text frame with a Path the client does not know."""
        return cls("unknown_path")


@dataclass
class RequestRecord:
    """One request the server saw."""

    kind: Literal["ws", "voices"]
    status: int
    step: StepKind = "ok"
    query: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    ssml: list[str] = field(default_factory=list)
    #: The MP3 bytes sent on this connection (all binary audio frames' payloads).
    audio: bytes = b""
    started: float = 0.0
    ended: float | None = None
    #: Still counted as open (from handshake until the client's close frame, or ours).
    open: bool = True


@dataclass(frozen=True)
class _Speech:
    mp3: bytes
    #: (type, text, offset ticks, duration ticks)
    boundaries: tuple[tuple[str, str, int, int], ...]
    samples: int


class EdgeServer:
    """A protocol-faithful fake of edge-tts's service on ``127.0.0.1`` (ephemeral port).

    Options: ``max_connections`` (handshakes beyond it are refused with 429 and counted in
    :attr:`over_limit`), ``clock_offset`` (seconds the server's clock is ahead of real time; a
    non-zero value makes the first handshake fail with 403 + Date), ``check_token`` (validate
    ``Sec-MS-GEC``), ``chunk_bytes`` (audio bytes per binary frame), ``default`` (the step when
    the script is empty), ``voices`` (extra ``(short name, locale, gender)`` entries).
    """

    def __init__(self, *, max_connections: int | None = None, clock_offset: float = 0.0,
                 check_token: bool = True, chunk_bytes: int = 2880, default: Step | None = None,
                 voices: Iterable[tuple[str, str, str]] = (), sample_rate: int = 24000) -> None:
        self.max_connections = max_connections
        self.clock_offset = clock_offset
        self.check_token = check_token
        self.chunk_bytes = chunk_bytes
        #: Output rate (the service uses 24 kHz; MPEG-2 also allows 16 and 22.05 kHz).
        self.sample_rate = sample_rate
        self.default = default or Step.ok()
        self.voices: tuple[tuple[str, str, str], ...] = (*KNOWN_VOICES, *voices)
        self.requests: list[RequestRecord] = []
        #: Most handshakes in flight at once, over-limit ones included.
        self.max_concurrent = 0
        #: Handshakes refused because ``max_connections`` were already open.
        self.over_limit = 0
        self._active = 0
        self._script: deque[Step] = deque()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], _Speech] = {}
        self._speech_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # -- public surface -----------------------------------------------------------------
    @property
    def url(self) -> str:
        """The WebSocket URL for ``GREETKIT_EDGE_URL`` (contains ``?`` as the client needs)."""
        return (f"ws://127.0.0.1:{self.port}{BASE_PATH}/edge/v1"
                f"?TrustedClientToken={TRUSTED_CLIENT_TOKEN}")

    @property
    def voices_url(self) -> str:
        """The voice list URL (the engine derives it from :attr:`url` by itself)."""
        return (f"http://127.0.0.1:{self.port}{BASE_PATH}/voices/list"
                f"?trustedclienttoken={TRUSTED_CLIENT_TOKEN}")

    def script(self, *steps: Step) -> None:
        """Queue steps for the next handshakes, in order."""
        with self._lock:
            self._script.extend(steps)

    def reset(self) -> None:
        """Forget the script, the records and the counters (the speech cache stays)."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.max_concurrent = self.over_limit = 0

    @property
    def handshakes(self) -> list[RequestRecord]:
        """Every WebSocket handshake, refused ones included."""
        with self._lock:
            return [r for r in self.requests if r.kind == "ws"]

    @property
    def ssml(self) -> list[str]:
        """Every SSML document received, in arrival order."""
        with self._lock:
            return [s for r in self.requests for s in r.ssml]

    def start(self) -> EdgeServer:
        """Start serving in a background thread; returns once the port is bound."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="edge-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"edge test server failed to start: {self._error}")
        return self

    def stop(self) -> None:
        """Close every connection and stop the thread."""
        loop, runner = self._loop, self._runner
        if loop is None or self._thread is None:
            return
        if runner is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> EdgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _serve(self) -> None:
        self._speech_lock = asyncio.Lock()
        app = web.Application()
        app.router.add_get(f"{BASE_PATH}/edge/v1", self._handle_ws)
        app.router.add_get(f"{BASE_PATH}/voices/list", self._handle_voices)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        # Bind the socket ourselves (an ephemeral port on loopback only) so the port is known
        # from it: aiohttp's public site API does not expose a TCPSite's bound port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    # -- DRM -----------------------------------------------------------------------------
    def _token_ok(self, token: str | None) -> bool:
        if not self.check_token:
            return True
        from edge_tts.drm import generate_sec_ms_gec_v2

        now = time.time() + self.clock_offset
        # The token changes every 5 minutes; accept the neighbouring windows too.
        return token in {generate_sec_ms_gec_v2(now + d) for d in (-300, 0, 300)}

    def _refuse(self, status: int) -> web.Response:
        date = email.utils.formatdate(time.time() + self.clock_offset, usegmt=True)
        return web.Response(status=status, headers={"Date": date}, text=f"{status}\n")

    # -- handlers ------------------------------------------------------------------------
    async def _handle_voices(self, request: web.Request) -> web.Response:
        record = RequestRecord("voices", 200, query=dict(request.query), started=time.time())
        with self._lock:
            self.requests.append(record)
        if not self._token_ok(request.query.get("Sec-MS-GEC")):
            record.status = 403
            return self._refuse(403)
        body = [_voice_json(name, locale, gender) for name, locale, gender in self.voices]
        return web.json_response(body)

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            record = RequestRecord("ws", 101, "ok", dict(request.query), started=time.time())
            self.requests.append(record)
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
            over = self.max_connections is not None and self._active > self.max_connections
            if over:
                self.over_limit += 1
        try:
            if over:
                record.status = 429
                return self._refuse(429)
            if not self._token_ok(request.query.get("Sec-MS-GEC")):
                record.status = 403  # before the script: a clock fix-up is not a scripted step
                return self._refuse(403)
            with self._lock:
                step = self._script.popleft() if self._script else self.default
            record.step = step.kind
            if step.kind == "http":
                record.status = step.status
                return self._refuse(step.status)
            ws = web.WebSocketResponse(autoclose=False)
            await ws.prepare(request)
            await self._converse(ws, step, record)
            return ws
        finally:
            self._release(record)

    def _release(self, record: RequestRecord) -> None:
        """Stop counting a connection: at the close frame, before the close is answered, so a
        client that has seen its connection end never finds it still counted."""
        with self._lock:
            if record.open:
                record.open = False
                record.ended = time.time()
                self._active -= 1

    async def _converse(self, ws: web.WebSocketResponse, step: Step,
                        record: RequestRecord) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.CLOSE:
                self._release(record)
                await ws.close()
                return
            if msg.type != WSMsgType.TEXT:
                continue
            headers, body = _parse_text_frame(msg.data)
            path = headers.get("Path")
            if path == "speech.config":
                record.config = json.loads(body)
            elif path == "ssml":
                record.ssml.append(body)
                finished = await self._answer(ws, step, headers.get("X-RequestId", ""), body,
                                              record)
                if not finished:
                    self._release(record)
                    await ws.close()
                    return

    async def _answer(self, ws: web.WebSocketResponse, step: Step, request_id: str, ssml: str,
                      record: RequestRecord) -> bool:
        """Answer one SSML turn. False when the script says to drop the connection."""
        if step.delay:
            await asyncio.sleep(step.delay)
        tag = {"context": {"serviceTag": uuid.uuid4().hex}}
        await ws.send_str(_text_frame(request_id, "turn.start", tag))
        if step.kind == "unknown_path":
            await ws.send_str(_text_frame(request_id, "speech.unheard-of", tag))
            return True
        stream_id = uuid.uuid4().hex.upper()
        await ws.send_str(_text_frame(request_id, "response",
                                      {**tag, "audio": {"type": "inline", "streamId": stream_id}}))
        speech = None if step.kind == "no_audio" else await self._speech(ssml,
                                                                          record.config or {})
        if speech is not None:
            limit = len(speech.mp3) if step.kind != "close" else int(len(speech.mp3)
                                                                     * step.fraction)
            pending = list(speech.boundaries)
            sent = 0
            while sent < limit:
                # A boundary goes out just before the audio that reaches its offset, as the
                # service interleaves them (48 kbit/s: 6000 bytes per second).
                while pending and pending[0][2] * 6000 // _TICKS <= sent + self.chunk_bytes:
                    await ws.send_str(_metadata_frame(request_id, pending.pop(0)))
                chunk = speech.mp3[sent:min(limit, sent + self.chunk_bytes)]
                await ws.send_bytes(_audio_frame(request_id, stream_id, chunk))
                record.audio += chunk
                sent += len(chunk)
            if step.kind == "close":
                return False
            for boundary in pending:
                await ws.send_str(_metadata_frame(request_id, boundary))
            await ws.send_bytes(_audio_frame(request_id, stream_id, b""))
        await ws.send_str(_text_frame(request_id, "turn.end", tag))
        return True

    # -- speech --------------------------------------------------------------------------
    async def _speech(self, ssml: str, config: dict[str, Any]) -> _Speech | None:
        voice, prosody, text = _parse_ssml(ssml)
        match = _VOICE_NAME.match(voice)
        known = {(loc, name.split("-", 2)[-1]) for name, loc, _ in self.voices}
        if match is None or (match.group(1), match.group(2)) not in known or not text.strip():
            return None  # the service answers an unknown voice with no audio
        options = (config.get("context", {}).get("synthesis", {}).get("audio", {})
                    .get("metadataoptions", {}))
        words = str(options.get("wordBoundaryEnabled", "false")).lower() == "true"
        key = (match.group(1), text, *prosody, str(words), str(self.sample_rate))
        assert self._speech_lock is not None
        async with self._speech_lock:
            if key not in self._cache:
                self._cache[key] = await _synthesize(text, match.group(1), prosody, words,
                                                     self.sample_rate)
        return self._cache[key]


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[EdgeServer]:
    """Run an :class:`EdgeServer` and point greetkit's edge engine at it for the duration.

    Sets ``GREETKIT_EDGE_URL`` and clears edge-tts's learned clock skew (class-level state),
    restoring both afterwards. As a pytest fixture::

        @pytest.fixture
        def edge_server():
            with serving(max_connections=4) as server:
                yield server
    """
    from edge_tts.drm import DRM

    saved_url, saved_skew = os.environ.get("GREETKIT_EDGE_URL"), DRM.clock_skew_seconds
    with EdgeServer(**options) as server:
        os.environ["GREETKIT_EDGE_URL"] = server.url
        DRM.clock_skew_seconds = 0.0
        try:
            yield server
        finally:
            DRM.clock_skew_seconds = saved_skew
            if saved_url is None:
                os.environ.pop("GREETKIT_EDGE_URL", None)
            else:
                os.environ["GREETKIT_EDGE_URL"] = saved_url


# -- wire format ----------------------------------------------------------------------------


def _text_frame(request_id: str, path: str, body: dict[str, Any]) -> str:
    return (f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
            f"Path:{path}\r\n\r\n{json.dumps(body, ensure_ascii=False)}")


def _metadata_frame(request_id: str, boundary: tuple[str, str, int, int]) -> str:
    kind, text, offset, duration = boundary
    item = {"Type": kind, "Data": {"Offset": offset, "Duration": duration,
                                   "text": {"Text": text, "Length": len(text),
                                            "BoundaryType": kind}}}
    return _text_frame(request_id, "audio.metadata", {"Metadata": [item]})


def _audio_frame(request_id: str, stream_id: str, data: bytes) -> bytes:
    # The closing frame of a turn carries no Content-Type and no data.
    kind = "Content-Type:audio/mpeg\r\n" if data else ""
    header = (f"X-RequestId:{request_id}\r\n{kind}X-StreamId:{stream_id}\r\n"
              "Path:audio\r\n").encode()
    return len(header).to_bytes(2, "big") + header + data


def _parse_text_frame(data: str) -> tuple[dict[str, str], str]:
    head, _, body = data.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name] = value
    return headers, body


def _parse_ssml(ssml: str) -> tuple[str, tuple[str, str, str], str]:
    """(voice name, (rate, pitch, volume), text) from the client's SSML."""
    root = ET.fromstring(ssml)
    voice = root.find(f"{_SSML_NS}voice")
    prosody = voice.find(f"{_SSML_NS}prosody") if voice is not None else None
    if voice is None or prosody is None:
        return "", ("+0%", "+0Hz", "+0%"), ""
    return (voice.get("name", ""),
            (prosody.get("rate", "+0%"), prosody.get("pitch", "+0Hz"),
             prosody.get("volume", "+0%")),
            "".join(prosody.itertext()))


def _voice_json(short_name: str, locale: str, gender: str) -> dict[str, Any]:
    name = short_name.split("-", 2)[-1]
    return {
        "Name": f"Microsoft Server Speech Text to Speech Voice ({locale}, {name})",
        "ShortName": short_name,
        "Gender": gender,
        "Locale": locale,
        "SuggestedCodec": "audio-24khz-48kbitrate-mono-mp3",
        "FriendlyName": f"Microsoft {name.removesuffix('Neural')} Online (Natural) - {locale}",
        "Status": "GA",
        "VoiceTag": {"ContentCategories": ["General"], "VoicePersonalities": ["Friendly"]},
    }


# -- audio ----------------------------------------------------------------------------------


async def _synthesize(text: str, locale: str, prosody: tuple[str, str, str], words: bool,
                      rate_out: int = 24000) -> _Speech:
    """espeak-ng speech for ``text`` at ``rate_out`` Hz, its MP3 and measured boundaries."""
    import soxr

    from greetkit.engines import get_engine

    espeak = get_engine("espeak")
    voice = _espeak_voice(locale)
    rate, pitch, volume = prosody
    pcm: list[npt.NDArray[np.float32]] = []
    boundaries: list[tuple[str, str, int, int]] = []
    position = 0
    for sentence in (s.strip() for s in _SENTENCES.split(text)):
        if not any(ch.isalnum() for ch in sentence):
            continue
        audio = await espeak.render(RenderRequest(
            key="edge-server", text=sentence, language=locale, voice=voice,
            options={"rate": rate, "pitch": pitch, "volume": volume}))
        samples = np.asarray(soxr.resample(audio.samples, audio.sample_rate, rate_out),
                             dtype=np.float32)
        loud = np.flatnonzero(np.abs(samples) > _SILENCE)
        if loud.size:
            start, end = position + int(loud[0]), position + int(loud[-1]) + 1
            boundaries += _boundaries(sentence, start, end, words, rate_out)
        pcm.append(samples)
        position += samples.size
    signal = np.concatenate(pcm) if pcm else np.zeros(rate_out // 10, dtype=np.float32)
    mp3 = await asyncio.to_thread(encode_mp3, signal, rate_out)
    return _Speech(mp3, tuple(boundaries), int(signal.size))


@functools.cache
def _espeak_voice(locale: str) -> str:
    """The espeak voice for a service locale, looked up once per locale (listing espeak's
    voices walks C memory, so it is kept out of the per-request path)."""
    from greetkit.engines.espeak import voice_for_language

    return voice_for_language(locale) or "en-us"


def _boundaries(sentence: str, start: int, end: int, words: bool,
                rate: int) -> list[tuple[str, str, int, int]]:
    def ticks(samples: int) -> int:
        return samples * _TICKS // rate

    if not words:
        return [("SentenceBoundary", sentence, ticks(start), ticks(end - start))]
    # Word timing is not measured: words share the sentence's span in proportion to length.
    tokens = re.findall(r"[\u3400-\u9fff]|\w+", sentence)
    total = sum(len(t) for t in tokens) or 1
    out, cursor = [], start
    for token in tokens:
        length = (end - start) * len(token) // total
        out.append(("WordBoundary", token, ticks(cursor), ticks(length)))
        cursor += length
    return out


def encode_mp3(samples: npt.NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float samples -> header-less MPEG Layer III at 48 kbit/s CBR (MPEG-2 at 24 kHz).

    libsndfile (>= 1.1) writes no Xing/Info frame at this bitrate, like the service, so a
    decoder does not compensate its priming: decoded audio starts 1105 samples late.
    """
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate, 1, format="MP3", subtype="MPEG_LAYER_III",
                      compression_level=_MP3_LEVEL_48K, bitrate_mode="CONSTANT") as f:
        f.write(samples)
    return buf.getvalue()


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (for assertions on what the client sent)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
