"""Producer/consumer: A fetches lists of image URLs, B downloads and saves them.

Runs offline: a local HTTP server (the demo's, in a thread) serves generated
PNG images.  Stage A is a generator (one page in, many URLs out); stage B has
four downloader processes.  Run: python examples/images.py [OUTDIR]
"""
import json
import os
import sys
import tempfile
import urllib.request

from interlock.demos.images import ImageServer
from interlock.pipeline import Pipeline


def fetch_list(job):
    base, page = job
    with urllib.request.urlopen(f"{base}/list/{page}") as r:
        yield from json.load(r)


class Save:
    def __init__(self, outdir):
        self.outdir = outdir

    def __call__(self, url):
        with urllib.request.urlopen(url) as r:
            data = r.read()
        path = os.path.join(self.outdir, url.rsplit("/", 1)[1])
        with open(path, "wb") as f:
            f.write(data)
        return path


if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="images-")
    os.makedirs(outdir, exist_ok=True)
    with ImageServer(count=20, per_page=5, delay=0.1) as server:
        pages = [(server.url, k) for k in range(4)]
        p = Pipeline(pages, ordered=False).stage(fetch_list).stage(Save(outdir), workers=4)
        for path in p:
            print("saved", path)
