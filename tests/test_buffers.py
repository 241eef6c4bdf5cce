"""AudioRing, FrameRing and Pairer: absolute indexing, gaps, drift fit, drops, contracts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from blocking import InThread

from streamavs.buffers import MAX_LOST_FILL_S, AudioRing, FrameRing, VideoFrame
from streamavs.pairing import Pairer
from streamavs.errors import InputError

SR = 16000
BLOCK = 320  # 20 ms


def ramp(start: int, n: int) -> np.ndarray:
    """Samples whose value encodes their absolute index (exact in float32 below 2**24)."""
    return np.arange(start, start + n, dtype=np.float32)


def frame(t_ns: int, index: int = 0) -> VideoFrame:
    return VideoFrame(np.zeros((2, 2, 3), np.uint8), t_ns, t_ns * 1e-9, index)


def test_audio_ring_wraps_with_absolute_indexing():
    ring = AudioRing(capacity_s=0.1, sample_rate=SR)  # 1600 samples
    written = 0
    for n in (700, 700, 700, 333, 1000):  # wraps several times, blocks straddle the end
        ring.write(ramp(written, n), t_end_ns=written + n)
        written += n
    assert ring.head == written == 3433
    out, gap = ring.read(written, 1600)  # exactly the retained span
    assert not gap
    np.testing.assert_array_equal(out, ramp(written - 1600, 1600))
    out, gap = ring.read(3000, 500)
    assert not gap
    np.testing.assert_array_equal(out, ramp(2500, 500))


def test_audio_ring_gap_for_overwritten_and_future_samples():
    ring = AudioRing(capacity_s=0.1, sample_rate=SR)
    ring.write(ramp(0, 2000), t_end_ns=1)  # block longer than the ring: keeps the newest 1600
    out, gap = ring.read(399, 100)  # overwritten (only 400.. are kept)
    assert gap and not out.any()
    out, gap = ring.read(2100, 200)  # half not yet written
    assert gap
    np.testing.assert_array_equal(out[:100], ramp(1900, 100))
    assert not out[100:].any()
    out, gap = ring.read(100, 300)  # before the stream start
    assert gap
    out, gap = ring.read(2000, 1600)
    assert not gap
    np.testing.assert_array_equal(out, ramp(400, 1600))


def test_sample_at_tracks_drift_within_one_block_under_jitter():
    rng = np.random.default_rng(0)
    ring = AudioRing(capacity_s=2.0, sample_rate=SR)
    true_rate = SR * 1.002  # the sound card runs 0.2 % fast against the monotonic clock
    t_start = 10**12
    head = 0
    for _ in range(500):  # 10 s of 20 ms blocks
        head += BLOCK
        true_t_end = t_start + head / true_rate * 1e9
        jitter = rng.uniform(0, 0.4) * BLOCK / SR * 1e9  # delivered up to 0.4 block late
        ring.write(np.zeros(BLOCK, np.float32), int(true_t_end + jitter))
    for back_s in (0.0, 0.5, 2.0):
        t = t_start + (head / true_rate - back_s) * 1e9
        truth = head - back_s * true_rate
        assert abs(ring.sample_at(int(t)) - truth) < BLOCK
    # A nominal-rate extrapolation over the whole run would be 10 s * 0.2 % = 320 samples off
    # at the start; the fit is local and stays within a block there too.
    assert abs(ring.sample_at(int(t_start + 9.0 * 1e9 / 1.0)) - 9.0 * true_rate) < BLOCK


def _steady(ring: AudioRing, blocks: int = 100) -> int:
    """Write `blocks` 20 ms blocks, each stamped exactly on time; returns the last block's end (ns)."""
    t = 0
    for _ in range(blocks):
        t += 20_000_000
        ring.write(ramp(ring.head, BLOCK), t)
    return t


def test_overflow_writes_zeros_for_the_lost_audio_and_reanchors():
    ring = AudioRing(capacity_s=2.0, sample_rate=SR)
    t = _steady(ring)
    assert ring.sample_at(t) == ring.head == 100 * BLOCK
    # 300 ms of input is lost: the next block arrives 320 ms later but holds only 20 ms.
    t += 320_000_000
    assert ring.mark_overflow(BLOCK, t) == int(0.3 * SR)  # 4800 zeros before the block
    ring.write(ramp(ring.head, BLOCK), t)
    assert ring.overflows == 1 and ring.head == 100 * BLOCK + 4800 + BLOCK
    assert ring.sample_at(t) == ring.head  # re-anchored on the new block, not 4800 samples off
    assert ring.sample_at(t - 20_000_000) == ring.head - BLOCK
    # The window that ends with the new block is honest: 300 ms of it stand for the lost audio.
    out, padded, missed = ring.read_window(ring.head, SR)
    assert padded == missed == 4800
    lost = slice(SR - BLOCK - 4800, SR - BLOCK)
    assert not out[lost].any()
    np.testing.assert_array_equal(out[: lost.start], ramp(100 * BLOCK - lost.start, lost.start))
    np.testing.assert_array_equal(out[lost.stop :], ramp(100 * BLOCK + 4800, BLOCK))


def test_pairer_reports_a_window_across_an_overflow_as_padded():
    frames, audio = FrameRing(), AudioRing(capacity_s=4.0, sample_rate=SR)
    t = _steady(audio)
    t += 320_000_000  # 300 ms lost before the next block
    audio.mark_overflow(BLOCK, t)
    audio.write(ramp(audio.head, BLOCK), t)
    frames.push(frame(t, 0))
    pair = Pairer(frames, audio, max_wait_s=0).next_pair(timeout=0)
    assert pair.window_ns[1] == t and not pair.waited
    assert pair.padded == pair.missed == 4800 and pair.audio_gap


def test_overflow_zeros_are_bounded_and_only_for_audio_that_was_lost():
    ring = AudioRing(sample_rate=SR)  # 10 s
    assert ring.mark_overflow(BLOCK, 20_000_000) == 0  # before any audio: no clock to measure by
    t = _steady(ring)
    t += 20_000_000  # flagged, but the block came on time: nothing was lost
    assert ring.mark_overflow(BLOCK, t) == 0
    ring.write(ramp(ring.head, BLOCK), t)
    t += 60 * 10**9  # a minute without audio (a stopped process, not an overflow): at most MAX_LOST_FILL_S
    assert ring.mark_overflow(BLOCK, t) == int(MAX_LOST_FILL_S * SR)
    assert ring.overflows == 3
    with pytest.raises(InputError, match="sample count next_samples >= 0"):
        ring.mark_overflow(-1, t)


def test_frame_ring_keeps_newest_and_counts_drops():
    ring = FrameRing(capacity=2)
    for i in range(5):
        ring.push(frame(100 + i, i))
    assert ring.drops == 3 and len(ring) == 2
    assert ring.latest().index == 4
    got = ring.take(timeout=0)
    assert got.index == 4 and ring.drops == 4 and len(ring) == 0
    assert ring.take(timeout=0.01) is None


def test_frame_ring_backpressure_blocks_until_taken():
    ring = FrameRing(capacity=1)
    ring.push(frame(1, 0))
    assert ring.push(frame(2, 1), block=True, timeout=0.05) is False  # nobody takes: it gives up
    pusher = InThread(ring.push, frame(3, 2), True, 30.0)
    pusher.wait_until_blocked_in(FrameRing.push)  # fails at once if the push returned instead of waiting
    assert ring.pushed == 1 and ring.latest().index == 0  # nothing was overwritten while it waits
    assert ring.take(newest=False).index == 0
    assert pusher.result() is True  # the take made room
    assert ring.latest().index == 2 and ring.pushed == 2 and ring.drops == 0


def test_out_of_order_frames_raise_input_error():
    ring = FrameRing()
    ring.push(frame(2_000, 0))
    with pytest.raises(InputError, match="timestamps must increase"):
        ring.push(frame(1_000, 1))
    with pytest.raises(InputError, match="not after the previous frame"):
        ring.push(frame(2_000, 2))


def _fill_audio(ring: AudioRing, t_end_ns: int, start_ns: int = 0) -> None:
    """Write blocks at nominal rate so that sample k ends at start + k/SR seconds."""
    while True:
        t = start_ns + (ring.head + BLOCK) * 10**9 // SR
        if t > t_end_ns:
            return
        ring.write(ramp(ring.head, BLOCK), t)


def test_pairer_takes_newest_frame_with_audio_ending_at_it():
    frames, audio = FrameRing(capacity=4), AudioRing(capacity_s=4.0)
    _fill_audio(audio, 3 * 10**9)
    for i, t in enumerate((2_000_000_000, 2_100_000_000, 2_500_000_000)):
        frames.push(frame(t, i))
    pair = Pairer(frames, audio).next_pair(timeout=0)
    assert pair.frame.index == 2
    assert pair.dropped_total == 2
    assert not pair.audio_gap
    assert pair.window_ns == (1_500_000_000, 2_500_000_000)
    assert pair.audio.shape == (SR,) and pair.audio.dtype == np.float32
    end = int(2.5 * SR)  # sample index of t = 2.5 s
    assert abs(pair.audio[-1] - (end - 1)) <= 1
    np.testing.assert_array_equal(np.diff(pair.audio), 1.0)


def test_pairer_waits_for_audio_then_reports_gap():
    frames, audio = FrameRing(), AudioRing(capacity_s=4.0)
    _fill_audio(audio, 2 * 10**9)
    pairer = Pairer(frames, audio, max_wait_s=30.0)

    # Audio reaching the frame arrives while the pairer waits for it: the pair uses it.
    frames.push(frame(2_100_000_000, 0))
    call = InThread(pairer.next_pair, 1)
    call.wait_until_blocked_in(AudioRing.wait_for)  # it looked, found 100 ms missing and waits
    _fill_audio(audio, 2_200_000_000)
    pair = call.result()
    assert pair.waited and not pair.audio_gap
    # It pairs as soon as the audio reaches one block before the frame (docs/protocol.md), which
    # may be before the writer above has written the rest: the window ends within one block of
    # the frame, and its last sample is the one at the window's stated end.
    end_ns = pair.window_ns[1]
    assert 2_100_000_000 - BLOCK * 10**9 // SR <= end_ns <= 2_100_000_000
    assert abs(pair.audio[-1] - (end_ns * SR // 10**9 - 1)) <= 1

    # Audio never arrives: returns after max_wait with zeros at the end and the gap flag.
    pairer.max_wait_s = 0.15
    frames.push(frame(3_000_000_000, 1))
    t0 = time.monotonic()
    pair = pairer.next_pair(timeout=1)
    assert time.monotonic() - t0 >= 0.149  # it waited max_wait_s (to the clock's rounding) before giving up
    assert pair.waited and pair.audio_gap
    have = audio.head - (3 * SR - SR)  # samples of the window that exist
    assert pair.audio[have:].max() == 0 and pair.audio[have - 1] == audio.head - 1


def test_pairer_lossless_takes_every_frame_in_order():
    frames, audio = FrameRing(capacity=8), AudioRing()
    _fill_audio(audio, 10**9)
    audio.finish()
    for i in range(5):
        frames.push(frame(100_000_000 * (i + 1), i))
    frames.finish()
    pairer = Pairer(frames, audio, lossless=True)
    got = [pairer.next_pair(timeout=0).frame.index for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]
    assert pairer.next_pair(timeout=1) is None  # finished: no waiting
    assert frames.drops == 0


def test_fill_is_silence_that_reads_as_missing_and_checks_its_input():
    ring = AudioRing(capacity_s=0.1, sample_rate=SR)  # 1600 samples
    ring.write(ramp(0, 1000), t_end_ns=1)
    ring.fill(1000, t_end_ns=2)  # wraps: overwrites the oldest 400 samples
    assert ring.head == 2000 and ring.block == 1000
    out, padded, missed = ring.read_window(2000, 1600)
    np.testing.assert_array_equal(out[:600], ramp(400, 600))
    assert not out[600:].any() and padded == missed == 1000
    out, gap = ring.read(1000, 1000)  # the first 400 were overwritten by the silence
    assert gap and not out[:400].any()
    np.testing.assert_array_equal(out[400:], ramp(400, 600))
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="sample count n >= 0"):
            ring.fill(bad, t_end_ns=3)
    ring.finish()
    with pytest.raises(InputError, match="after finish"):
        ring.fill(10, t_end_ns=3)
