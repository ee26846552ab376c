"""A stand-in for Azure Files' REST API on 127.0.0.1, for the ``azfs://`` tests.

Azurite (the Azure storage emulator) serves Blob, Queue and Table storage but not Files, and no
Files emulator is available from the registries here, so ``azfs://`` is tested against this
server instead: it answers the two operations the SDK uses to read a model (List Directories
and Files, ``?restype=directory&comp=list``; Get File with an ``x-ms-range``), with responses
written after Azure's REST reference (XML enumeration, ``x-ms-error-code`` on errors), from an
in-memory tree. It does not check request signatures.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzureFilesFake:
    """``files`` maps ``share/dir/.../name`` to bytes; directories are implied by the paths."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                parts = urlsplit(self.path)
                path = unquote(parts.path).strip("/")
                query = parse_qs(parts.query)
                if not path.startswith(ACCOUNT + "/"):
                    return self._error(400, "InvalidUri", "The requested URI is not valid.")
                path = path[len(ACCOUNT) + 1:]
                if query.get("comp") == ["list"] and query.get("restype") == ["directory"]:
                    return self._list(path)
                return self._get(path)

            def _error(self, status: int, code: str, message: str) -> None:
                body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                        f"<Message>{escape(message)}</Message></Error>").encode()
                self.send_response(status)
                self.send_header("x-ms-error-code", code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _list(self, path: str) -> None:
                share = path.split("/")[0]
                if not any(k.startswith(share + "/") for k in fake.files):
                    return self._error(404, "ShareNotFound", "The specified share does not exist.")
                prefix = path + "/"
                below = [k[len(prefix):] for k in fake.files if k.startswith(prefix)]
                if not below:
                    return self._error(404, "ResourceNotFound",
                                       "The specified resource does not exist.")
                dirs = sorted({b.split("/")[0] for b in below if "/" in b})
                files = sorted(b for b in below if "/" not in b)
                entries = "".join(f"<Directory><Name>{escape(d)}</Name><Properties /></Directory>"
                                  for d in dirs)
                entries += "".join(
                    f"<File><Name>{escape(f)}</Name><Properties><Content-Length>"
                    f"{len(fake.files[prefix + f])}</Content-Length></Properties></File>"
                    for f in files)
                body = ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                        f'ServiceEndpoint="http://127.0.0.1/{ACCOUNT}/" '
                        f'ShareName="{escape(share)}" DirectoryPath="{escape(path)}">'
                        f"<Entries>{entries}</Entries><NextMarker /></EnumerationResults>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-ms-version", "2025-05-05")
                self.end_headers()
                self.wfile.write(body)

            def _get(self, path: str) -> None:
                data = fake.files.get(path)
                if data is None:
                    return self._error(404, "ResourceNotFound",
                                       "The specified resource does not exist.")
                total = len(data)
                start, end = 0, total - 1
                wanted = self.headers.get("x-ms-range") or self.headers.get("Range")
                if wanted and wanted.startswith("bytes="):
                    lo, _, hi = wanted[6:].partition("-")
                    start, end = int(lo), min(int(hi) if hi else total - 1, total - 1)
                chunk = data[start:end + 1]
                self.send_response(206 if wanted else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(chunk)))
                if wanted:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                self.send_header("ETag", f'"0x{hash(data) & 0xFFFFFFFF:X}"')
                self.send_header("x-ms-type", "File")
                self.send_header("x-ms-version", "2025-05-05")
                self.end_headers()
                self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"FileEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
