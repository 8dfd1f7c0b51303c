"""Resample: audio transcode, a PCM WAV in and the same sound at another sample rate out.

OpenWhisk-style action: `main(args)` does the I/O (faasio), `process(data, params)` the work.
Pure Python plus numpy (no sox in the sandbox): the `wave` module parses and writes the
container, numpy interpolates each channel linearly onto the new time grid — a real, CPU-bound
transform whose cost grows with the input, which is what the evaluation needs from it.

Parameters (`args["params"]`, or the top of `args` in local mode): `rate` (the output's sample
rate in Hz, default 16000), `channels` (1 mixes down to mono; default: keep). Input: 8/16/32-bit
PCM WAV. Output: 16-bit PCM WAV with round(frames × rate / input rate) frames.
"""

import io
import wave

import numpy as np

import faasio

DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def process(data: bytes, params: dict) -> bytes:
    """Decode the WAV `data`, resample it to `rate`, encode it as 16-bit PCM WAV."""
    rate = int(params.get("rate", 16000))
    if not 1000 <= rate <= 384000:
        raise ValueError(f"rate {rate} outside 1000..384000 Hz")
    with wave.open(io.BytesIO(data), "rb") as w:
        n_channels, width, in_rate, n_frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n_frames)
    if width not in DTYPES:
        raise ValueError(f"unsupported sample width {width} bytes")
    samples = np.frombuffer(raw, dtype=DTYPES[width]).astype(np.float64)
    if width == 1:
        samples = (samples - 128.0) * 256.0  # unsigned 8-bit to the 16-bit scale
    elif width == 4:
        samples /= 65536.0
    samples = samples[: (len(samples) // n_channels) * n_channels].reshape(-1, n_channels)
    if int(params.get("channels", n_channels)) == 1 and n_channels > 1:
        samples = samples.mean(axis=1, keepdims=True)
    frames_in = samples.shape[0]
    frames_out = int(round(frames_in * rate / in_rate))
    t_in = np.arange(frames_in) / in_rate
    t_out = np.arange(frames_out) / rate
    out_samples = np.empty((frames_out, samples.shape[1]))
    for c in range(samples.shape[1]):
        out_samples[:, c] = np.interp(t_out, t_in, samples[:, c])
    pcm = np.clip(np.round(out_samples), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue(), {"rate": rate, "frames": frames_out, "input_rate": in_rate}


def main(args: dict) -> dict:
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process, content_type="audio/wav")
