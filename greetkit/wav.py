"""RIFF/WAVE: the one reader (and writer) of greetkit's clip files.

The store writes every clip as a mono PCM_16 WAV with libsndfile (:func:`encode`); the loader,
``greetkit verify``, ``greetkit preview`` and the report read those files back through
:func:`read_header` and :func:`check_layout` alone, so they agree on what a sound file is.
The header is parsed by walking the RIFF chunks (``RIFF`` size ``WAVE``, then ``<tag> <size>``
chunks padded to even length), never by assuming libsndfile's 44-byte layout: a ``LIST`` chunk
may sit before ``data``.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from greetkit.errors import AudioError

__all__ = ["MIN_SIZE", "WavHeader", "check_layout", "encode", "read_header"]

_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: The smallest WAV there is: RIFF header (12) + fmt chunk (8 + 16) + data chunk header (8).
MIN_SIZE = 12 + 8 + 16 + 8


@dataclass(frozen=True)
class WavHeader:
    """What the chunks before the PCM say."""

    #: ``wFormatTag``: 1 for PCM, 0xFFFE for WAVE_FORMAT_EXTENSIBLE.
    format: int
    channels: int
    sample_rate: int
    bits: int
    #: Byte offset of the first PCM byte (just past the ``data`` chunk header).
    data_offset: int
    #: Length of the ``data`` chunk, bytes.
    data_bytes: int


def encode(pcm: npt.NDArray[np.int16], sample_rate: int) -> bytes:
    """Mono int16 PCM as the bytes of a PCM_16 WAV file (written by libsndfile).

    >>> data = encode(np.zeros(3, np.int16), 48000)
    >>> read_header(data).data_offset, len(data)
    (44, 50)
    """
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def read_header(head: bytes, size: int | None = None) -> WavHeader:
    """Parse the chunks of ``head`` (a whole WAV file, or at least its bytes up to the PCM)
    as far as the ``data`` chunk. ``size`` is the whole file's length (default ``len(head)``):
    a ``data`` chunk running past it means the file was truncated.

    Raises :class:`~greetkit.errors.AudioError` (a ValueError) naming what is wrong.
    """
    size = len(head) if size is None else size
    if size < MIN_SIZE or len(head) < 12:
        raise AudioError("file too short for a WAV header")
    riff, _, wave = _RIFF.unpack_from(head, 0)
    if riff != b"RIFF" or wave != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(head):
        tag, length = _CHUNK.unpack_from(head, pos)
        if tag == b"fmt ":
            if length < 16 or pos + 8 + 16 > len(head):
                raise AudioError("fmt chunk too short")
            tag_, channels, rate, _, _, bits = _FMT.unpack_from(head, pos + 8)
            fmt = (tag_, channels, rate, bits)
        elif tag == b"data":
            if fmt is None:
                raise AudioError("data chunk before fmt chunk")
            if pos + 8 + length > size:
                raise AudioError("data chunk runs past the end of the file (truncated?)")
            return WavHeader(*fmt, data_offset=pos + 8, data_bytes=length)
        pos += 8 + length + (length & 1)
    raise AudioError(f"no data chunk header in the first {len(head)} bytes")


def check_layout(head: bytes, size: int, *, sample_rate: int, data_offset: int,
                 samples: int) -> WavHeader:
    """Check that ``head`` describes what a manifest records for a clip file: mono PCM_16
    at ``sample_rate``, its PCM starting at ``data_offset`` and exactly ``samples`` long.

    Raises :class:`~greetkit.errors.AudioError` naming the first difference.
    """
    h = read_header(head, size)
    if h.format not in (_WAVE_FORMAT_PCM, _WAVE_FORMAT_EXTENSIBLE) or h.bits != 16:
        raise AudioError(f"not PCM_16 (format {h.format}, {h.bits} bits)")
    if h.channels != 1:
        raise AudioError(f"{h.channels} channels, expected mono")
    if h.sample_rate != sample_rate:
        raise AudioError(f"{h.sample_rate} Hz in the header, manifest says {sample_rate}")
    if h.data_offset != data_offset:
        raise AudioError(f"PCM starts at byte {h.data_offset}, manifest says {data_offset}")
    if h.data_bytes != samples * 2:
        raise AudioError(f"data chunk holds {h.data_bytes} bytes, manifest says {samples} "
                         f"samples ({samples * 2} bytes)")
    return h
