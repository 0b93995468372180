"""CMLClient over real sockets: HTTPS verified by the CA the operator names, and hosts answering like no CML."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from cml_cloud_manager.cml import CMLApiError, CMLClient, CMLUnreachable
from cml_cloud_manager.cml.simulator import RunningSimulator, Simulator, serve_in_thread

USERNAME, PASSWORD = "admin", "tls-secret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    with serve_in_thread(Simulator(username=USERNAME, password=PASSWORD), tls=(cert, key)) as running:
        yield running


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(path)
    return path


async def test_https_host_is_read_with_the_operators_ca_bundle(https: RunningSimulator, ca_file: Path) -> None:
    url = https.base_url("tls-host")
    async with CMLClient(url, USERNAME, PASSWORD, ca_bundle=ca_file, timeout=5) as client:
        assert (await client.system_information()).ready
        assert len(await client.list_labs()) == len(https.sim.host("tls-host").labs)


async def test_https_host_with_an_unknown_ca_is_refused_as_unreachable(https: RunningSimulator) -> None:
    url = https.base_url("tls-host")
    async with CMLClient(url, USERNAME, PASSWORD, timeout=5) as client:
        with pytest.raises(CMLUnreachable) as failure:
            await client.system_information()

    assert "certificate" in failure.value.message.lower()
    assert url in failure.value.message


async def test_https_host_is_read_without_verification_when_told_to(https: RunningSimulator) -> None:
    async with CMLClient(https.base_url("tls-host"), USERNAME, PASSWORD, verify=False, timeout=5) as client:
        assert len(await client.list_labs()) == len(https.sim.host("tls-host").labs)


@pytest.fixture
async def raw_host() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server that answers every request with the bytes the test puts in `answer[0]`."""
    answer: list[bytes] = [b""]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", answer


NOT_CML = {
    "a web page": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>",
        "unexpected response to GET /system_information",
    ),
    # Not followed: the login page it points to would be read as CML's answer.
    "a redirect": (
        b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/login\r\nContent-Length: 0\r\n\r\n",
        "unexpected response",
    ),
    "a body cut short": (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"version": "2.9',
        "answered GET /system_information unusably",
    ),
}


@pytest.mark.parametrize("case", NOT_CML)
async def test_an_answer_unlike_cmls_is_an_api_error_naming_the_host(
    raw_host: tuple[str, list[bytes]], case: str
) -> None:
    url, answer = raw_host
    answer[0], expected = NOT_CML[case]
    async with CMLClient(url, USERNAME, PASSWORD, timeout=5) as client:
        with pytest.raises(CMLApiError) as failure:
            await client.system_information()

    assert expected in failure.value.message
    assert url in failure.value.message
