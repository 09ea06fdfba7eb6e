"""tests/edge_server.py speaks edge-tts's wire format, checked frame by frame.

These tests talk to the server with a bare aiohttp client (not edge_tts), so they check the
bytes on the wire that the engine tests take for granted.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from edge_server import EdgeServer, Step, encode_mp3

pytest.importorskip("edge_tts")
from edge_tts.constants import SEC_MS_GEC_VERSION
from edge_tts.drm import generate_sec_ms_gec_v2

SSML = ("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>"
        "<voice name='Microsoft Server Speech Text to Speech Voice (en-US, AvaNeural)'>"
        "<prosody pitch='+0Hz' rate='+0%' volume='+0%'>Hello there. How are you?</prosody>"
        "</voice></speak>")
CONFIG = ('{"context":{"synthesis":{"audio":{"metadataoptions":{"sentenceBoundaryEnabled":'
          '"true","wordBoundaryEnabled":"false"},"outputFormat":'
          '"audio-24khz-48kbitrate-mono-mp3"}}}}')


@pytest.fixture(scope="module")
def server() -> Iterator[EdgeServer]:
    with EdgeServer() as s:
        yield s


def _signed(url: str, when: float | None = None) -> str:
    token = generate_sec_ms_gec_v2(time.time() if when is None else when)
    return f"{url}&ConnectionId=abc&Sec-MS-GEC={token}&Sec-MS-GEC-Version={SEC_MS_GEC_VERSION}"


async def _turn(url: str) -> list[tuple[str, Any]]:
    """One speech.config + ssml exchange; every frame received until the server is done."""
    frames: list[tuple[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(_signed(url)) as ws:
        await ws.send_str("X-Timestamp:now\r\nContent-Type:application/json; charset=utf-8\r\n"
                          f"Path:speech.config\r\n\r\n{CONFIG}\r\n")
        await ws.send_str("X-RequestId:req1\r\nContent-Type:application/ssml+xml\r\n"
                          f"X-Timestamp:nowZ\r\nPath:ssml\r\n\r\n{SSML}")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(("text", msg.data))
                if "Path:turn.end" in msg.data:
                    break
            elif msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(("binary", msg.data))
    return frames


def _path(frame: tuple[str, Any]) -> str:
    kind, data = frame
    if kind == "text":
        head = data.split("\r\n\r\n", 1)[0]
    else:
        head = data[2:2 + int.from_bytes(data[:2], "big")].decode()
    return dict(line.split(":", 1) for line in head.split("\r\n") if line)["Path"]


def test_turn_has_the_services_frame_order(server: EdgeServer) -> None:
    """turn.start, response, metadata/audio interleaved, an empty audio frame, turn.end."""
    frames = asyncio.run(_turn(server.url))
    paths = [_path(f) for f in frames]
    assert paths[:2] == ["turn.start", "response"]
    assert paths[-2:] == ["audio", "turn.end"]
    assert set(paths[2:-2]) == {"audio.metadata", "audio"}
    assert paths.index("audio.metadata") < paths.index("audio")
    assert all("X-RequestId:req1\r\n" in d for k, d in frames if k == "text")


def test_audio_frames_have_length_prefixed_crlf_headers(server: EdgeServer) -> None:
    """2-byte big-endian header length, CRLF-ended header block, then MP3; the last is empty."""
    frames = [d for k, d in asyncio.run(_turn(server.url)) if k == "binary"]
    for data in frames:
        length = int.from_bytes(data[:2], "big")
        header = data[2:2 + length]
        assert header.startswith(b"X-RequestId:req1\r\n") and header.endswith(b"Path:audio\r\n")
    *audio, last = frames
    assert all(b"Content-Type:audio/mpeg\r\n" in d[:200] for d in audio)
    last_len = int.from_bytes(last[:2], "big")
    assert b"Content-Type" not in last and len(last) == 2 + last_len


def test_metadata_is_sentence_boundaries_in_ticks(server: EdgeServer) -> None:
    """SentenceBoundary items with Offset/Duration in 100 ns ticks and the sentence text."""
    frames = asyncio.run(_turn(server.url))
    items = [json.loads(d.split("\r\n\r\n", 1)[1])["Metadata"][0]
             for k, d in frames if k == "text" and "Path:audio.metadata" in d]
    assert [i["Data"]["text"]["Text"] for i in items] == ["Hello there.", "How are you?"]
    assert all(i["Type"] == "SentenceBoundary" for i in items)
    first, second = (i["Data"] for i in items)
    assert first["Offset"] + first["Duration"] <= second["Offset"]
    assert 0.3e7 < first["Duration"] < 2e7  # "Hello there." lasts between 0.3 and 2 s


def test_audio_is_headerless_mpeg2_layer3_48k_mono(server: EdgeServer) -> None:
    """The payload is MPEG-2 Layer III, 24 kHz, 48 kbit/s, mono, no ID3 or Xing/Info frame."""
    frames = [d for k, d in asyncio.run(_turn(server.url)) if k == "binary"]
    mp3 = b"".join(d[2 + int.from_bytes(d[:2], "big"):] for d in frames)
    header = int.from_bytes(mp3[:4], "big")
    assert header >> 21 == 0x7FF  # frame sync
    assert (header >> 19) & 0b11 == 0b10  # MPEG-2
    assert (header >> 17) & 0b11 == 0b01  # Layer III
    assert (header >> 12) & 0xF == 6  # 48 kbit/s in the MPEG-2 LSF table
    assert (header >> 10) & 0b11 == 1  # 24 kHz for MPEG-2
    assert (header >> 6) & 0b11 == 0b11  # mono
    assert not mp3.startswith(b"ID3") and b"Xing" not in mp3[:200] and b"Info" not in mp3[:200]
    info = sf.info(io.BytesIO(mp3))
    assert (info.samplerate, info.channels) == (24000, 1)


def test_decoder_priming_is_1105_samples() -> None:
    """A click encoded without a gapless header decodes 1105 samples late (libsndfile)."""
    signal = np.zeros(24000, dtype=np.float32)
    signal[6000:6480] = np.hanning(480).astype(np.float32) * 0.8
    decoded, _ = sf.read(io.BytesIO(encode_mp3(signal)), dtype="float32")
    lag = int(np.argmax(np.correlate(decoded[:12000], signal[5000:7500], "valid"))) - 5000
    assert lag == 1105


def test_wrong_token_gets_403_with_the_servers_date(server: EdgeServer) -> None:
    """A Sec-MS-GEC from a clock an hour off is refused with the server's Date."""

    async def handshake() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(_signed(server.url, time.time() - 3600)):
                    return 101, ""
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status, (exc.headers or {}).get("Date", "")

    status, date = asyncio.run(handshake())
    assert status == 403
    from email.utils import parsedate_to_datetime

    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5


def test_over_limit_handshake_is_refused_and_counted() -> None:
    """With max_connections=1, a second simultaneous connection gets 429 and is counted."""

    async def two() -> list[int]:
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(_signed(limited.url))
            try:
                await session.ws_connect(_signed(limited.url))
                second = 101
            except aiohttp.WSServerHandshakeError as exc:
                second = exc.status
            await first.close()
            return [101, second]

    with EdgeServer(max_connections=1) as limited:
        assert asyncio.run(two()) == [101, 429]
        assert (limited.max_concurrent, limited.over_limit) == (2, 1)


def test_voice_list_has_the_real_fields(server: EdgeServer) -> None:
    """The voice list endpoint returns the service's JSON shape."""

    async def fetch() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(
                _signed(server.voices_url)) as resp:
            data: list[dict[str, Any]] = await resp.json()
            return data

    voices = asyncio.run(fetch())
    ava = next(v for v in voices if v["ShortName"] == "en-US-AvaNeural")
    assert ava["Name"] == "Microsoft Server Speech Text to Speech Voice (en-US, AvaNeural)"
    assert ava["Locale"] == "en-US" and ava["Gender"] == "Female"
    assert set(ava) >= {"SuggestedCodec", "FriendlyName", "Status", "VoiceTag"}


def test_script_steps_are_consumed_in_order() -> None:
    """Scripted steps apply to successive handshakes, then the default."""

    async def statuses(url: str, n: int) -> list[int]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(n):
                try:
                    async with session.ws_connect(_signed(url)):
                        out.append(101)
                except aiohttp.WSServerHandshakeError as exc:
                    out.append(exc.status)
        return out

    with EdgeServer() as s:
        s.script(Step.http(503), Step.http(429))
        assert asyncio.run(statuses(s.url, 3)) == [503, 429, 101]
