"""greetkit/wav.py: the one RIFF/WAVE reader (and writer) of clip files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from greetkit.errors import AudioError
from greetkit.wav import MIN_SIZE, check_layout, encode, read_header

RAMP = (np.arange(100) % 50 - 25).astype(np.int16)


def chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


FMT = chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 24000, 48000, 2, 16))


def test_encode_writes_a_44_byte_header_and_the_samples_verbatim() -> None:
    """libsndfile's PCM_16 WAV: mono, the rate given, the samples byte for byte."""
    data = encode(RAMP, 48000)
    h = read_header(data)
    assert (h.format, h.channels, h.sample_rate, h.bits) == (1, 1, 48000, 16)
    assert (h.data_offset, h.data_bytes, len(data)) == (44, 200, 244)
    assert data[44:] == RAMP.tobytes()


def test_chunks_before_data_are_walked_with_their_padding() -> None:
    """An odd-length LIST chunk (padded to even) before data moves the PCM offset."""
    data = riff(FMT, chunk(b"LIST", b"abc"), chunk(b"data", RAMP.tobytes()))
    h = read_header(data)
    assert (h.sample_rate, h.data_offset, h.data_bytes) == (24000, 12 + 24 + 12 + 8, 200)


@pytest.mark.parametrize(("data", "problem"), [
    (b"ID3" + bytes(60), "not a RIFF/WAVE file"),
    (b"RIFF", "too short"),
    (riff(chunk(b"data", bytes(8)), FMT), "data chunk before fmt chunk"),
    (riff(chunk(b"fmt ", bytes(8)), chunk(b"data", bytes(40))), "fmt chunk too short"),
    (riff(FMT, chunk(b"LIST", bytes(40))), "no data chunk"),
    (encode(RAMP, 48000)[:-2], "truncated"),
], ids=["id3", "short", "order", "fmt", "nodata", "truncated"])
def test_broken_files_are_refused_naming_the_problem(data: bytes, problem: str) -> None:
    """Each malformation raises AudioError (a ValueError) saying what is wrong."""
    with pytest.raises(AudioError, match=problem):
        read_header(data)
    assert MIN_SIZE == 44


def test_header_read_alone_is_checked_against_the_whole_file_size() -> None:
    """The loader reads only the bytes before the PCM: the data chunk is checked against
    the file's size, not the bytes at hand."""
    data = encode(RAMP, 48000)
    assert read_header(data[:44], len(data)).data_bytes == 200
    with pytest.raises(AudioError, match="truncated"):
        read_header(data[:44], len(data) - 2)


@pytest.mark.parametrize(("change", "problem"), [
    ({"sample_rate": 24000}, "48000 Hz in the header, manifest says 24000"),
    ({"data_offset": 46}, "PCM starts at byte 44, manifest says 46"),
    ({"samples": 99}, "data chunk holds 200 bytes, manifest says 99 samples"),
])
def test_check_layout_names_the_first_difference_from_the_manifest(
        change: dict[str, int], problem: str) -> None:
    """Rate, offset and length are compared with what the manifest records."""
    data = encode(RAMP, 48000)
    record = {"sample_rate": 48000, "data_offset": 44, "samples": 100}
    assert check_layout(data, len(data), **record).data_bytes == 200
    with pytest.raises(AudioError, match=problem):
        check_layout(data, len(data), **{**record, **change})


def test_check_layout_refuses_stereo_and_float() -> None:
    """Only mono PCM_16 is a greetkit clip."""
    stereo = riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 2, 48000, 192000, 4, 16)),
                  chunk(b"data", bytes(8)))
    floats = riff(chunk(b"fmt ", struct.pack("<HHIIHH", 3, 1, 48000, 192000, 4, 32)),
                  chunk(b"data", bytes(8)))
    with pytest.raises(AudioError, match="2 channels, expected mono"):
        check_layout(stereo, len(stereo), sample_rate=48000, data_offset=44, samples=4)
    with pytest.raises(AudioError, match="not PCM_16"):
        check_layout(floats, len(floats), sample_rate=48000, data_offset=44, samples=2)
