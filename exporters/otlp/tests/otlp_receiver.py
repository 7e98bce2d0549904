"""An OTLP/HTTP metrics receiver for the interop tests, decoding with the official
`opentelemetry-proto` package.

Usage: python otlp_receiver.py PORT OUT.jsonl   (PORT 0 picks a free port)

Serves POST /v1/metrics on 127.0.0.1. Each request body (gunzipped when Content-Encoding says
gzip) is parsed as an ExportMetricsServiceRequest and appended to OUT as one JSON line:
{"content_type": ..., "content_encoding": ..., "request": <MessageToDict of the request>}.
A body that does not parse is answered 400, a content type other than application/x-protobuf
415; a good one gets an empty ExportMetricsServiceResponse. Prints "listening PORT" once ready.
"""
import gzip
import http.server
import json
import sys

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

OUT = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body=b"", content_type="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/metrics":
            self.reply(404, b"not found", "text/plain")
            return
        ctype = self.headers.get("Content-Type", "")
        if ctype != "application/x-protobuf":
            self.reply(415, ("unsupported content type %r" % ctype).encode(), "text/plain")
            return
        encoding = self.headers.get("Content-Encoding", "")
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
        except (OSError, DecodeError) as e:
            self.reply(400, ("bad request body: %s" % e).encode(), "text/plain")
            return
        line = {
            "content_type": ctype,
            "content_encoding": encoding,
            "request": MessageToDict(req),
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.reply(200, ExportMetricsServiceResponse().SerializeToString())

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
