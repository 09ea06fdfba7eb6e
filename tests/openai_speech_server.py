"""A loopback OpenAI-compatible ``POST /v1/audio/speech`` server that really speaks.

It answers the request shape of OpenAI's speech API (``model``, ``voice``, ``input``,
``response_format``, ``speed``) with audio synthesized by greetkit's espeak engine at the API's
24 kHz, 16-bit mono: ``pcm`` as raw little-endian samples (``audio/pcm``), ``wav`` as a WAV
file. Every request body is recorded, so tests can assert what the real plugin sent. Unknown
voices and formats get OpenAI-style JSON errors. It listens on 127.0.0.1 only, on a free port,
and shuts itself down after ``lifetime`` seconds even if a test forgets to.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from greetkit.engines.base import RenderRequest
from greetkit.engines.espeak import EspeakEngine

RATE = 24000

#: The head of a voices.yaml whose ``agent`` engine is livekit-plugins-openai's TTS (format with
#: ``url`` and ``model``); tests append their languages and phrases. Line 4 is ``livekit:``,
#: line 5 ``options:``.
AGENT_ENGINE_SPEC = """\
version: 1
engines:
  agent:
    livekit: livekit.plugins.openai:TTS
    options: {{model: {model}, base_url: "{url}", response_format: pcm}}
defaults: {{engine: agent, language: en}}
"""


def agent_spec(body: str, url: str, *, model: str = "gpt-4o-mini-tts") -> str:
    """:data:`AGENT_ENGINE_SPEC` pointed at ``url``, followed by ``body`` (plain YAML)."""
    return AGENT_ENGINE_SPEC.format(model=model, url=url) + body
#: OpenAI voice name -> espeak voice (distinct voices, so a wrong voice is audible in tests).
VOICES = {"alloy": "en-us", "echo": "en-029"}


class SpeechServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gain_db: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        #: Level offset of everything served (a provider speaking louder or softer).
        self.gain_db = gain_db
        #: HTTP statuses to answer the next speech requests with, first to last (then speech).
        self.fail_next: list[int] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        rate = f"{round((speed - 1.0) * 100):+d}%"
        request = RenderRequest(key="speech", text=text, language="en", voice=VOICES[voice],
                                options={"rate": rate} if speed != 1.0 else {})
        audio = asyncio.run(EspeakEngine().render(request))
        samples = soxr.resample(audio.samples, audio.sample_rate, RATE)
        samples = samples * (10 ** (self.gain_db / 20))
        return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")


class _Handler(BaseHTTPRequestHandler):
    server: SpeechServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:  # the plugin's prewarm() probes "/"
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.error(400, "request body is not JSON")
        with self.server.lock:
            self.server.requests.append(body)
            status = self.server.fail_next.pop(0) if self.server.fail_next else None
        if status is not None:
            return self.error(status, f"scripted failure {status}")
        if self.path.rstrip("/") != "/v1/audio/speech":
            return self.error(404, f"no route {self.path}")
        voice, fmt = body.get("voice"), body.get("response_format", "mp3")
        if voice not in VOICES:
            return self.error(400, f"voice {voice!r} is not supported")
        if fmt not in ("pcm", "wav"):
            return self.error(400, f"response_format {fmt!r} is not supported here")
        if not str(body.get("input", "")).strip():
            return self.error(400, "input is empty")
        pcm = self.server.synthesize(str(body["input"]), voice, float(body.get("speed", 1.0)))
        if fmt == "pcm":
            payload, ctype = pcm.tobytes(), "audio/pcm"
        else:
            buf = io.BytesIO()
            sf.write(buf, pcm, RATE, format="WAV", subtype="PCM_16")
            payload, ctype = buf.getvalue(), "audio/wav"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def error(self, status: int, message: str) -> None:
        payload = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())


@contextmanager
def serving(*, gain_db: float = 0.0, lifetime: float = 300.0) -> Iterator[SpeechServer]:
    """Run a :class:`SpeechServer` in a thread for the ``with`` block (at most ``lifetime``)."""
    server = SpeechServer(gain_db)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    timer = threading.Timer(lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield server
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
