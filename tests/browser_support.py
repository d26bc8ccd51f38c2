"""Render an HTML file in a real headless Chromium with the network off: its DOM, a screenshot, its requests.

    from tests.browser_support import render
    dom, png = render(path)            # skips the test (with the reason) if Chromium is missing

The network is off in the strongest way available here:
- ``unshare -n`` (root) or ``unshare -rn`` (an unprivileged user namespace): Chromium runs in a
  network namespace with no interface but a loopback that is down, so nothing can be reached;
- otherwise every request goes to a proxy on a closed local port and every host name resolves
  to nothing (``--proxy-server`` + ``--host-resolver-rules``).
``NETWORK_OFF`` says which one is used. One Chromium launch writes the DOM after load
(``--dump-dom``), the screenshot of the window (``--screenshot``) and a NetLog, from which
``requests`` lists what the page asked for (Chromium's own background fetches are left out).
"""

import atexit
import functools
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pytest

WIDTH, HEIGHT = 1280, 1600
TIMEOUT_SECONDS = 120
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox",  # no setuid sandbox as root or in a namespace
    "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-sync", "--disable-default-apps",
    "--disable-background-networking", "--disable-component-update", "--disable-extensions",
]
DEAD_PROXY_FLAGS = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                    "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium() -> Optional[str]:
    """The Chromium binary (Debian's ``chromium`` package), or None."""
    return os.environ.get("PRODML_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@functools.lru_cache(maxsize=1)
def _network_off() -> Tuple[Tuple[str, ...], Tuple[str, ...], str]:
    """(command prefix, extra Chromium flags, description) that cut Chromium off the network."""
    if shutil.which("unshare"):
        for prefix in (("unshare", "-n"), ("unshare", "-rn")):
            try:
                ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return prefix, (), f"{' '.join(prefix)} (a network namespace without interfaces)"
    return (), tuple(DEAD_PROXY_FLAGS), "proxy to a closed port 127.0.0.1:9 and no host resolution"


@functools.lru_cache(maxsize=1)
def _screenshots() -> str:
    folder = tempfile.mkdtemp(prefix="prodml-screenshots-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def network_off() -> str:
    """How the network is cut off for Chromium here."""
    return _network_off()[2]


@dataclass(frozen=True)
class Rendered:
    """What the browser produced: the DOM after load, the screenshot's path, the URLs the page requested."""

    dom: str
    screenshot: str
    requests: List[str]


def render_page(html_path: str, width: int = WIDTH, height: int = HEIGHT) -> Rendered:
    """Loads ``html_path`` in headless Chromium with the network off; skips the test if there is no Chromium."""
    binary = chromium()
    if not binary:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    html_path = os.path.abspath(html_path)
    # Not beside the page: the caller's output folder stays as the code under test wrote it.
    screenshot = os.path.join(_screenshots(), f"{len(os.listdir(_screenshots())):03d}-"
                              f"{os.path.splitext(os.path.basename(html_path))[0]}.png")
    prefix, extra, _ = _network_off()
    with tempfile.TemporaryDirectory(prefix="prodml-chromium-") as profile:
        net_log = os.path.join(profile, "netlog.json")
        command = [*prefix, binary, *CHROMIUM_FLAGS, *extra, f"--user-data-dir={profile}",
                   f"--window-size={width},{height}", f"--screenshot={screenshot}", "--dump-dom",
                   f"--log-net-log={net_log}", "file://" + html_path]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        if done.returncode != 0 or not os.path.exists(screenshot):
            raise AssertionError(f"Chromium failed on {html_path} (exit {done.returncode}):\n{done.stderr[-3000:]}")
        requests = _page_requests(net_log)
    return Rendered(done.stdout, screenshot, requests)


def render(html_path: str) -> Tuple[str, str]:
    """``(dom, screenshot_png_path)`` of ``html_path`` rendered in headless Chromium with the network off."""
    rendered = render_page(html_path)
    return rendered.dom, rendered.screenshot


def _page_requests(net_log: str) -> List[str]:
    """URLs of the requests a page started; Chromium's own fetches have no origin and are left out."""
    if not os.path.exists(net_log):
        return []
    with open(net_log, encoding="utf-8") as f:
        text = f.read()
    # Chromium may be killed before it closes the JSON array; the events are still there.
    if not text.rstrip().endswith("}"):
        text = text.rstrip().rstrip(",") + "]}"
    log = json.loads(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and "url" in params and params.get("initiator") != "not an origin":
            urls.append(params["url"])
    return sorted(set(urls))


def png_pixels(path: str):
    """The PNG at ``path`` as a ``(height, width, channels)`` uint8 array (8-bit RGB/RGBA/grey, no interlace)."""
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path} is not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, color_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise AssertionError(f"{path}: unsupported PNG (bit depth {depth}, colour type {color_type}, "
                             f"interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: a running sum per channel along the row
            cur = (np.cumsum(line.reshape(width, channels).astype(np.uint64), axis=0) & 0xFF) \
                .astype(np.uint8).reshape(stride)
        elif kind == 2:  # Up
            cur = line + prev
        else:  # Average (3) and Paeth (4) depend on the byte just decoded: one byte at a time
            cur = np.frombuffer(_unfilter_sequential(int(kind), line.tobytes(), prev.tobytes(), channels),
                                dtype=np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)


def _unfilter_sequential(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    cur = bytearray(line)
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
            continue
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return bytes(cur)


def non_white_fraction(pixels, threshold: int = 245) -> float:
    """Share of pixels with some colour channel below ``threshold`` (0 for a blank page)."""
    rgb = pixels[..., :3]
    return float((rgb.min(axis=-1) < threshold).mean())


def has_colour(pixels, hex_colour: str, tolerance: int = 8, minimum: int = 20) -> bool:
    """Whether at least ``minimum`` pixels are within ``tolerance`` of ``#rrggbb`` on every channel."""
    import numpy as np

    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    close = (np.abs(pixels[..., :3].astype(np.int16) - target) <= tolerance).all(axis=-1)
    return int(close.sum()) >= minimum
