"""Demo ``images``: A fetches lists of image URLs, B downloads and saves them.

The demo runs offline: it starts its own small HTTP server on 127.0.0.1
(a thread of this process) that serves pages of image URLs and generated PNG
images, each after a short delay, as a real server would take.  Stage A (a
generator stage) fetches each page and yields its URLs; stage B (several
downloader processes) downloads each image and saves it to disk.  The
downloads overlap, so N downloaders finish about N times sooner than one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from interlock.pipeline import Pipeline

DESCRIPTION = "producer/consumer: fetch lists of image URLs, download them in parallel (offline)"

EXPLAIN = """\
A (one process) fetches pages listing image URLs from a local HTTP server;
B (several processes) downloads each image and saves it to disk. An
interlock queue connects them: A never waits for B to finish an image, and
the downloaders share the work as it comes.
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_png(n: int, size: int = 48) -> bytes:
    """A small generated RGB image (a gradient tinted by ``n``), as PNG."""
    r0, g0, b0 = (n * 53) % 256, (n * 97) % 256, (n * 151) % 256
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type 0
        for x in range(size):
            row += bytes(((r0 + 4 * x) % 256, (g0 + 4 * y) % 256, (b0 + 2 * (x + y)) % 256))
        rows.append(bytes(row))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


class _Handler(BaseHTTPRequestHandler):
    server: "ImageServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        if self.path.startswith("/list/"):
            page = int(self.path.rsplit("/", 1)[1])
            first = page * srv.per_page
            body = json.dumps([f"{srv.url}/img/{n}.png" for n in
                               range(first, min(first + srv.per_page, srv.count))]).encode()
            ctype = "application/json"
        elif self.path.startswith("/img/") and self.path.endswith(".png"):
            with srv.lock:
                srv.serving += 1
                srv.peak = max(srv.peak, srv.serving)
            try:
                time.sleep(srv.delay)  # the network and the server take their time
            finally:
                with srv.lock:
                    srv.serving -= 1
            body = make_png(int(self.path[5:-4]))
            ctype = "image/png"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # quiet


class ImageServer(ThreadingHTTPServer):
    """``count`` images, ``per_page`` URLs per list page, on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, count: int, per_page: int, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.count, self.per_page, self.delay = count, per_page, delay
        # images being served right now, and the most at once: the proof
        # that the downloaders overlapped (the demo prints it)
        self.lock = threading.Lock()
        self.serving = self.peak = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "ImageServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class Download:
    """Stage B: a URL -> the image saved in ``outdir``; returns (path, bytes)."""

    __name__ = "download"

    def __init__(self, outdir: str) -> None:
        self.outdir = outdir

    def __call__(self, url: str) -> tuple[str, int, int]:
        with urllib.request.urlopen(url, timeout=10) as r:
            data = r.read()
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError(f"{url} did not send a PNG")
        path = os.path.join(self.outdir, url.rsplit("/", 1)[1])
        with open(path, "wb") as f:
            f.write(data)
        return path, len(data), os.getpid()


def fetch_list(arg: tuple[str, int]) -> Iterator[str]:
    """Stage A, a generator: (server, page number) -> each image URL on that page."""
    base, page = arg
    with urllib.request.urlopen(f"{base}/list/{page}", timeout=10) as r:
        yield from json.load(r)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="interlock demo images", description=EXPLAIN,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=24, help="images to fetch (24)")
    ap.add_argument("-d", "--downloaders", type=int, default=4, help="downloader processes (4)")
    ap.add_argument("--per-page", type=int, default=8, help="image URLs per list page (8)")
    ap.add_argument("--delay", type=float, default=0.1,
                    help="seconds the server takes per image (0.1)")
    ap.add_argument("-o", "--out", default=None,
                    help="directory to save into (default: a temporary one, removed after)")
    ap.add_argument("--start-method", default=None, choices=["fork", "spawn", "forkserver"])
    args = ap.parse_args(argv)
    if min(args.images, args.downloaders, args.per_page) < 1 or args.delay < 0:
        ap.error("--images, --downloaders and --per-page must be >= 1, --delay >= 0")
    print(EXPLAIN)
    outdir = args.out or tempfile.mkdtemp(prefix="interlock-images-")
    os.makedirs(outdir, exist_ok=True)
    pages = (args.images + args.per_page - 1) // args.per_page
    try:
        with ImageServer(args.images, args.per_page, args.delay) as server:
            print(f"serving {args.images} generated images at {server.url} "
                  f"({pages} list pages, {args.delay:.2f} s per image)")
            t0 = time.monotonic()
            p = (Pipeline([(server.url, k) for k in range(pages)], ordered=False,
                          mp_context=args.start_method)
                 .stage(fetch_list, 1)
                 .stage(Download(outdir), args.downloaders, name="download",
                        maxsize=2 * args.downloaders))
            saved, total, by = 0, 0, set()
            with p:
                for path, size, pid in p:
                    saved += 1
                    total += size
                    by.add(pid)
                    print(f"[{time.monotonic() - t0:5.2f}s] saved {path} ({size} bytes)",
                          flush=True)
            elapsed = time.monotonic() - t0
        valid = sum(1 for f in os.listdir(outdir) if f.endswith(".png")
                    and open(os.path.join(outdir, f), "rb").read(8) == PNG_SIGNATURE)
        print()
        print(f"Result: saved {saved} images ({total} bytes, {valid} valid PNG files in "
              f"{outdir}) in {elapsed:.2f} s with {len(by)} downloader process(es), "
              f"up to {server.peak} downloads at once; one at a time would take at least "
              f"{args.images * args.delay:.2f} s.")
        return 0 if saved == valid == args.images else 1
    finally:
        if args.out is None:
            shutil.rmtree(outdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
