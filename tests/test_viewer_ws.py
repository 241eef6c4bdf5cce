"""The viewer server (streamavs.viewer) with real sockets: a Publisher on loopback, the aiohttp
server in its thread, and Python WebSocket clients (aiohttp): message order, the access token,
a client that stops reading, and the page states."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest
from media import free_port

from streamavs.protocol import decode_mask, encode_jpeg
from streamavs.publish import Publisher
from streamavs.viewer.hub import ViewerConfig
from streamavs.viewer.server import STATIC_DIR, ViewerServer

ENGINE = {"name": "tiny", "sha256": "0123abcd"}


def unpack_view(data: bytes) -> tuple[dict, bytes, bytes]:
    """(header, jpeg, mask payload) of a binary view message."""
    (n,) = struct.unpack_from("<I", data)
    head = json.loads(data[4 : 4 + n])
    jpeg = data[4 + n : 4 + n + head["jpeg"]]
    return head, jpeg, data[4 + n + head["jpeg"] : 4 + n + head["jpeg"] + head["mask_bytes"]]


def publish(pub: Publisher, i: int, jpeg: bytes | None, shape=(48, 64), encoding="rle", t0=1000.0) -> float:
    """Mask number i (a blob that moves with i) and, when `jpeg`, its preview frame; returns t_capture."""
    t = t0 + i / 25
    prob = np.zeros((16, 16), np.float32)
    prob[4:10, i % 8 : i % 8 + 6] = 0.9
    pub.publish(prob, t_capture=t, audio_window=(t - 1, t), sounding=(i % 10) / 10, uncertainty=0.2,
                engine=ENGINE, backend="onnxruntime", encoding=encoding)  # fmt: skip
    if jpeg is not None:
        pub.publish_frame(jpeg, shape=shape, t_capture=t, quality=80, index=i)
    return t


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


@pytest.fixture
def pub():
    with Publisher("tcp://127.0.0.1:*", sndhwm=100_000, heartbeat_s=0.2) as p:
        yield p


@pytest.fixture
def viewer(pub):
    with ViewerServer(ViewerConfig(pub.address, stale_s=1.0, status_hz=20), port=0) as server:
        wait_until(lambda: _heartbeat_seen(pub, server), what="the viewer's subscription")
        yield server


def _heartbeat_seen(pub: Publisher, server: ViewerServer) -> bool:
    pub.heartbeat(force=True)
    time.sleep(0.02)
    return server.call(lambda: server.hub.heartbeats) > 0


def ws_url(server: ViewerServer, token: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws" + (f"?token={token}" if token else "")


def test_a_client_gets_hello_then_views_in_order_with_every_plot_point(pub, viewer):
    jpeg = encode_jpeg(np.full((48, 64, 3), 128, np.uint8), 80)
    n = 60

    async def client():
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(viewer)) as ws:
            first = await ws.receive_json(timeout=5)
            await asyncio.to_thread(lambda: [publish(pub, i, jpeg) for i in range(n)])
            texts, views = [], []
            # until the last view, every plot point, and a status that counts the last frame (the hub takes a
            # mask and its frame in two hand-overs: a status tick may fall between them)
            while (not views or views[-1][0]["mask"]["seq"] < n - 1 or sum(len(t["points"]) for t in texts) < n
                   or not texts or texts[-1]["frames"] < n):
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(json.loads(msg.data))
                else:
                    views.append(unpack_view(msg.data))
            return first, texts, views

    first, texts, views = asyncio.run(client())
    assert first["type"] == "hello" and first["address"] == pub.address
    assert all(t["type"] == "status" for t in texts)
    masks = [v[0]["mask"]["seq"] for v in views]
    assert masks == sorted(masks), "views never go back in time"
    # Until the first preview frame arrives, a mask is a view of its own (a run may have no previews);
    # then its frame comes with it again.
    first = next(k for k, v in enumerate(views) if v[0]["frame"] is not None)
    assert all(v[0]["frame"] is None for v in views[:first]) and first <= 1
    views = views[first:]
    frames = [v[0]["frame"]["seq"] for v in views]
    assert frames == sorted(set(frames)) and frames[-1] == n - 1, "then frames in order (latest-only: some skipped)"
    for head, got_jpeg, payload in views:
        assert head["exact"] and head["frame"]["t_capture"] == head["mask"]["t_capture"]
        assert head["frame"]["index"] == head["mask"]["seq"] and got_jpeg == jpeg
        i = head["mask"]["seq"]
        mask = decode_mask(payload, "rle", head["mask"]["shape"])  # the payload as published
        assert mask[4:10, i % 8 : i % 8 + 6].all() and mask.sum() == 36
    points = [p for t in texts for p in t["points"]]
    assert [p[0] for p in points] == [1000.0 + i / 25 for i in range(n)], "every mask is one plot point, once"
    assert [p[1] for p in points] == [(i % 10) / 10 for i in range(n)]
    assert texts[-1]["state"] == "live" and texts[-1]["session"] == pub.session
    assert texts[-1]["engine"] == ENGINE and texts[-1]["masks"] == n and texts[-1]["frames"] == n


def test_a_client_that_stops_reading_stalls_neither_the_stream_nor_other_clients(pub, viewer):
    """One browser reads nothing after the hello; its socket fills, its slot keeps only the newest view,
    the viewer keeps receiving every mask and frame, and another browser gets the last view."""
    rng = np.random.default_rng(0)
    jpeg = encode_jpeg(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), 95)  # noise: ~400 kB, fills buffers
    n = 120

    async def scenario():
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(ws_url(viewer)) as stalled, session.ws_connect(ws_url(viewer)) as good:  # fmt: skip
            await stalled.receive_json(timeout=5)  # the hello; then this client never reads again
            await good.receive_json(timeout=5)
            for i in range(n):
                await asyncio.to_thread(publish, pub, i, jpeg, (480, 640))
            # The viewer takes in every mask and frame while one client is stuck (and the other waits).
            await asyncio.to_thread(wait_until, lambda: viewer.call(lambda: viewer.hub.frames) == n, 60, "all frames")
            last = None
            while last is None or last["mask"]["seq"] < n - 1:
                msg = await good.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    last = unpack_view(msg.data)[0]
            return await asyncio.to_thread(viewer.call, viewer.hub.stats)

    stats = asyncio.run(scenario())
    assert stats["masks"] == n and stats["frames"] == n  # the viewer lost nothing while one client was stuck
    stuck = min(stats["clients"], key=lambda c: c["sent_views"])
    # 120 views of ~360 kB (43 MB) cannot all fit in the socket buffers of a client that reads nothing:
    # its sender waits, and its slot keeps replacing the view it holds with the newest one.
    assert stuck["superseded"] > 0, stuck
    assert stuck["sent_views"] + stuck["superseded"] <= stats["views"]


def test_the_token_guards_the_page_the_socket_and_stats_but_not_the_static_files(pub):
    with ViewerServer(ViewerConfig(pub.address), port=0, token="s3cret-token") as server:
        base = f"http://127.0.0.1:{server.port}"

        async def probe():
            async with aiohttp.ClientSession() as session:
                codes = {}
                for path in ("/", "/?token=wrong", "/?token=s3cret-token", "/stats", "/stats?token=s3cret-token",
                             "/static/app.js"):
                    async with session.get(base + path) as r:
                        codes[path] = (r.status, await r.text())
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await session.ws_connect(ws_url(server, "wrong"))
                async with session.ws_connect(ws_url(server, "s3cret-token")) as ws:
                    hello = await ws.receive_json(timeout=5)
                return codes, err.value.status, hello

        codes, ws_status, hello = asyncio.run(probe())
    assert codes["/"][0] == codes["/?token=wrong"][0] == codes["/stats"][0] == ws_status == 403
    assert "needs its access token" in codes["/"][1]
    assert codes["/?token=s3cret-token"][0] == 200 and "<canvas id=\"video\"" in codes["/?token=s3cret-token"][1]
    assert codes["/stats?token=s3cret-token"][0] == 200 and codes["/static/app.js"][0] == 200
    assert hello["type"] == "hello"


def test_other_sites_and_rebound_host_names_are_refused(pub):
    """A browser lets any page open ws://127.0.0.1:PORT: a foreign Origin is refused; without --remote a
    Host that is not loopback (DNS rebinding) is refused too; a token that is not ASCII is a 403, not a 500."""
    with ViewerServer(ViewerConfig(pub.address), port=0) as server:
        base = f"http://127.0.0.1:{server.port}"

        async def probe():
            async with aiohttp.ClientSession() as session:
                got = {}
                for name, headers in (("plain", {}), ("localhost", {"Host": f"localhost:{server.port}"}),
                                      ("rebound", {"Host": f"rebind.evil.example:{server.port}"}),
                                      ("foreign", {"Origin": "https://evil.example"}),
                                      ("own", {"Origin": base})):
                    async with session.get(base + "/stats", headers=headers) as r:
                        got[name] = (r.status, await r.text())
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await session.ws_connect(ws_url(server), origin="https://evil.example")
                got["ws_foreign"] = err.value.status
                async with session.ws_connect(ws_url(server), origin=base) as ws:
                    got["ws_own"] = (await ws.receive_json(timeout=5))["type"]
                return got

        got = asyncio.run(probe())
    assert got["plain"][0] == got["localhost"][0] == got["own"][0] == 200
    assert got["rebound"][0] == 403 and "serves this machine only" in got["rebound"][1]
    assert got["foreign"][0] == got["ws_foreign"] == 403 and "another site" in got["foreign"][1]
    assert got["ws_own"] == "hello"
    with ViewerServer(ViewerConfig(pub.address), port=0, token="s3cret-token") as server:
        async def non_ascii():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{server.port}/stats?token=%C3%A9") as r:
                    return r.status
        assert asyncio.run(non_ascii()) == 403


def test_a_capture_time_far_off_neither_freezes_the_status_nor_the_latency(pub, viewer):
    """Any finite t_capture passes protocol v1; one of -1e308 made the latency overflow to inf, the
    status JSON fail, and every page freeze. The sample is left out; statuses go on."""
    async def client():
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(viewer)) as ws:
            await ws.receive_json(timeout=5)
            await asyncio.to_thread(publish, pub, 0, None, (48, 64), "rle", -1e308)
            await asyncio.to_thread(publish, pub, 1, None, (48, 64), "rle", 1000.0)
            texts = []
            # statuses for 1 s after both masks: the subscriber's stats (with the latency) reach the hub every 0.25 s
            while not texts or texts[-1]["masks"] < 2 or len([t for t in texts if t["masks"] == 2]) < 10:
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.TEXT or msg.type == aiohttp.WSMsgType.BINARY, msg
                if msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(json.loads(msg.data))
            return texts

    texts = asyncio.run(client())
    assert texts[-1]["state"] in ("no_frames", "live") and texts[-1]["masks"] == 2
    assert texts[-1]["latency_ms"] and all(v < 1e18 for v in texts[-1]["latency_ms"].values())


def test_states_waiting_unreachable_no_masks_no_frames_restarted_live():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with ViewerServer(ViewerConfig(address, stale_s=0.5), port=0) as server:
        state = lambda: server.call(lambda: server.hub.state(time.monotonic()))  # noqa: E731
        at = lambda dt: server.call(lambda: server.hub.state(server.hub.started + dt))  # noqa: E731
        assert at(0.1) == "waiting"  # before stale_s has passed (asked at that time, not when the call gets through)
        wait_until(lambda: state() == "unreachable", what="unreachable without a publisher")
        with Publisher(address, heartbeat_s=0.1) as pub:
            beat = lambda: pub.heartbeat() or True  # noqa: E731
            wait_until(lambda: beat() and state() == "no_masks", what="no_masks with heartbeats only")
            wait_until(lambda: publish(pub, 0, None) and state() == "no_frames", what="no_frames with masks only")
            views = server.call(lambda: server.hub.views)
            assert views >= 1  # without frames, each mask is a view of its own
            jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8), 80)
            wait_until(lambda: publish(pub, 1, jpeg) and state() == "live", what="live")
            first_session = pub.session
        with Publisher(address, heartbeat_s=0.1) as pub2:  # the publisher restarts on the same address
            # "restarted" shows for stale_s after the new session's first message: checked at that moment
            restarted = lambda: server.call(lambda: server.hub.restarted_at)  # noqa: E731
            wait_until(lambda: pub2.heartbeat(force=True) and restarted() is not None, what="the restart seen")
            assert server.call(lambda: server.hub.state(server.hub.restarted_at + 0.1)) == "restarted"
            assert server.call(lambda: server.hub.session) == pub2.session != first_session
        wait_until(lambda: state() == "unreachable", what="unreachable after the publisher closed")


def test_view_cli_refuses_a_network_host_without_remote():
    proc = subprocess.run([sys.executable, "-m", "streamavs", "view", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "--host 0.0.0.0 would show the stream" in lines[0] and "add --remote" in lines[0]


def test_view_cli_with_remote_prints_a_url_with_a_random_token_that_the_page_needs():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamavs", "view", "tcp://127.0.0.1:1", "--remote",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        token = re.search(r"\?token=([A-Za-z0-9_-]+)", line)
        assert token and len(token.group(1)) >= 20, line + proc.stderr.read()

        async def get(path):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
                return r.status

        assert asyncio.run(get("/")) == 403
        assert asyncio.run(get(f"/?token={token.group(1)}")) == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.startswith("viewer: masks 0")


def test_the_viewer_imports_neither_torch_nor_training_code():
    code = (
        "import sys\n"
        "from streamavs.cli.app import build_app\n"
        "build_app()\n"
        "from streamavs.viewer.hub import ViewerConfig\n"
        "from streamavs.viewer.server import ViewerServer\n"
        "ViewerServer(ViewerConfig('tcp://127.0.0.1:1'), port=0).start().close()\n"
        "print([m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('streamavs.training')])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_page_loads_nothing_from_elsewhere():
    """Every file the page uses is under /static/ of the same server; JS imports are relative."""
    files = sorted(STATIC_DIR.iterdir())
    assert {f.name for f in files} == {"index.html", "app.js", "decode.js", "plot.js", "viewer.css"}
    for f in files:
        text = f.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{f.name} names another host"
        for spec in re.findall(r"""\bimport\b[^'"]*['"]([^'"]+)['"]""", text):
            assert spec.startswith("./"), f"{f.name} imports {spec}"
    html = (STATIC_DIR / "index.html").read_text()
    assert set(re.findall(r'(?:src|href)="([^"]+)"', html)) == {"/static/app.js", "/static/viewer.css", "data:,"}


@pytest.mark.slow  # ~5.8 s: run --view end to end, in processes
def test_run_view_serves_the_page_with_frames_and_stops_it_at_the_end(tmp_path, ffmpeg):
    """`streamavs run --view PORT`: the viewer runs beside the pipeline (previews at 10 fps by default)."""
    from media import make_video

    clip = make_video(tmp_path / "clip.mp4", seconds=4.0, fps=25, size="320x240")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamavs", "run", "--input", str(clip), "--realtime", "--view", str(port),
         "--publish", f"tcp://127.0.0.1:{free_port()}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    async def stats():
        try:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/stats") as r:
                return await r.json()
        except aiohttp.ClientConnectionError:
            return None

    try:
        seen = wait_until(lambda: (st := asyncio.run(stats())) and st["frames"] > 0 and st, 30, "frames in the viewer")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err[-2000:]
    assert seen["masks"] > 0 and seen["state"] in ("live", "no_frames")
    assert f"streamavs view: open http://127.0.0.1:{port}/" in err
    assert asyncio.run(stats()) is None, "the viewer stops with the run"
    preview = next(line for line in out.splitlines() if line.startswith("preview frames"))
    assert int(preview.split()[2]) > 0


def test_a_taken_port_or_a_bad_address_is_a_one_line_error():
    from streamavs.errors import InputError

    with ViewerServer(ViewerConfig("tcp://127.0.0.1:1"), port=0) as first:
        with pytest.raises(InputError, match=rf"cannot serve the viewer on 127.0.0.1:{first.port}: .*--port {first.port + 1}"):
            ViewerServer(ViewerConfig("tcp://127.0.0.1:1"), port=first.port).start()
    with pytest.raises(InputError, match="cannot connect to the mask stream at foo.*tcp://127.0.0.1:5555"):
        ViewerServer(ViewerConfig("foo"), port=0).start()
