#!/usr/bin/env python3
"""moto's S3 server (as `moto_server` runs it) plus a request log with sizes.

    python bench/s3_server.py --port PORT --log requests.jsonl [--host 127.0.0.1]

moto_server's own stderr log (werkzeug format) has the request line and status but
neither the Range header nor byte counts; this wraps the same WSGI app in a
middleware that appends one JSON object per request to --log:
  {"t": start, "dt": seconds, "method", "path", "query", "range", "copy": bool,
   "status", "in": request body bytes, "out": response body bytes}
Line-buffered, so a reader sees each request once it has been answered.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

from werkzeug.serving import run_simple


class RequestLog:
    def __init__(self, app, path):
        self.app = app
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        t0 = time.time()
        rec = {"t": t0, "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
               "query": environ.get("QUERY_STRING", ""), "range": environ.get("HTTP_RANGE"),
               "copy": "HTTP_X_AMZ_COPY_SOURCE" in environ}
        try:
            rec["in"] = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            rec["in"] = 0
        status_box = {}

        def sr(status, headers, exc_info=None):
            status_box["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        out = 0
        body = self.app(environ, sr)
        try:
            for chunk in body:
                out += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()
            rec.update(status=status_box.get("status"), out=out, dt=time.time() - t0)
            with self.lock:
                self.f.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(a.port))
    from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                               create_backend_app)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(a.host, a.port, RequestLog(app, a.log), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
