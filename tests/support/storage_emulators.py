"""Real storage servers on 127.0.0.1 for the cloud-storage tests, started and stopped by them.

* S3: moto's standalone server (``moto_server``, PyPI ``moto[server]``) with authentication on:
  its first 3 requests create an IAM user, its policy and an access key, after which every
  request must be signed with that key (so wrong credentials are refused as on AWS);
* GCS: ``gcp-storage-emulator`` (PyPI), in memory; it does not check credentials;
* Azure Blob: Azurite (npm ``azurite``, installed by ``.ci/run`` into ``.ci/node``), in memory,
  checking the shared-key signature of every request.

Each :class:`Emulator` seeds objects with the provider's own SDK and gives the environment an
``ovserve-server`` needs to reach it (``env``) and a wrong-credentials variant (``bad_env``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ovtest_server import free_port

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
             "K1SZFPTOtr/KBHBeksoGMGw==")  # Azurite's documented development account key
WRONG_AZURE_KEY = "d3Jvbmcga2V5IGZvciB0aGUgZGV2ZWxvcG1lbnQgYWNjb3VudA=="
BUCKET = "models"
# Every variable a provider reads; cleared in the server's environment unless set here.
_ALL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "S3_ENDPOINT", "S3_USE_HTTPS", "STORAGE_EMULATOR_HOST",
             "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"emulator not listening after {timeout}s:\n{log.read_text()}")


class Emulator:
    scheme = ""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / f"{type(self).__name__}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env={**os.environ, **(env or {})})
        _wait_port(self.port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{BUCKET}/{path}"

    def _env(self, **values: str) -> dict[str, str]:
        return {**dict.fromkeys(_ALL_VARS, ""), **values}

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def bad_env(self) -> dict[str, str]:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        self.put(key, path.read_bytes())

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def upload_dir(self, folder: Path, prefix: str) -> list[str]:
        keys = []
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                self.put_file(key, path)
                keys.append(key)
        return keys


class S3(Emulator):
    scheme = "s3"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        moto = Path(sys.executable).parent / "moto_server"
        self._start([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                    {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        import boto3

        endpoint = f"http://127.0.0.1:{self.port}"
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="ovserve")
        iam.put_user_policy(UserName="ovserve", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="ovserve")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.client: Any = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                        aws_access_key_id=self.key_id,
                                        aws_secret_access_key=self.secret)
        self.client.create_bucket(Bucket=BUCKET)

    @property
    def env(self) -> dict[str, str]:
        # host:port with S3_USE_HTTPS=0: the form OVMS's docs use for MinIO
        return self._env(AWS_ACCESS_KEY_ID=self.key_id, AWS_SECRET_ACCESS_KEY=self.secret,
                         AWS_REGION="us-east-1", S3_ENDPOINT=f"127.0.0.1:{self.port}",
                         S3_USE_HTTPS="0")

    @property
    def bad_env(self) -> dict[str, str]:
        return {**self.env, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0"}

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), BUCKET, key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=key)


class GCS(Emulator):
    scheme = "gs"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        exe = Path(sys.executable).parent / "gcp-storage-emulator"
        self._start([str(exe), "start", "--host", "127.0.0.1", "--port", str(self.port),
                     "--in-memory"])
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="ovserve", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": self.endpoint})
        self.bucket: Any = client.create_bucket(BUCKET)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return self._env(STORAGE_EMULATOR_HOST=self.endpoint)

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def put_file(self, key: str, path: Path) -> None:
        self.bucket.blob(key).upload_from_filename(str(path))

    def delete(self, key: str) -> None:
        self.bucket.blob(key).delete()


class Azure(Emulator):
    scheme = "az"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `npm install --prefix .ci/node azurite` "
                               "(.ci/run does)")
        self._start([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                     "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"])
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection(AZURE_KEY))
        self.container: Any = service.create_container(BUCKET)

    def connection(self, key: str) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")

    @property
    def env(self) -> dict[str, str]:
        return self._env(AZURE_STORAGE_CONNECTION_STRING=self.connection(AZURE_KEY))

    @property
    def bad_env(self) -> dict[str, str]:
        return self._env(AZURE_STORAGE_CONNECTION_STRING=self.connection(WRONG_AZURE_KEY))

    def put(self, key: str, data: bytes) -> None:
        self.container.upload_blob(key, data, overwrite=True)

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as f:
            self.container.upload_blob(key, f, overwrite=True)

    def delete(self, key: str) -> None:
        self.container.delete_blob(key)


PROVIDERS: dict[str, type[Emulator]] = {"s3": S3, "gs": GCS, "az": Azure}
