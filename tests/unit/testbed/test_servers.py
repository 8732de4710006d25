"""Smoke tests: each test server starts, answers, and survives a restart with its data."""

from __future__ import annotations

import socket
import uuid

import boto3
import nats
import psycopg
import pytest
import redis
import sqlalchemy as sa

from earthkeep.testbed.servers import (
    NatsServer,
    PostgresServer,
    RedisServer,
    ServerError,
    find_binary,
    free_port,
    free_ports,
)


def test_postgres_answers_select_1(postgres_server, pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("select current_database()")).scalar() == pg_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()
    assert postgres_server.url.endswith("/postgres")


def test_postgres_stop_start_and_kill_keep_data():
    with PostgresServer() as pg:
        dsn = pg.dsn(pg.create_database("keep").rsplit("/", 1)[1])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create table t (x int)")
            conn.execute("insert into t values (42)")
        pg.stop()
        assert not pg.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
        pg.start()
        pg.kill()  # a crash: start must recover
        assert not pg.running
        pg.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select x from t").fetchall() == [(42,)]
        data_dir = pg.dir
    assert not data_dir.exists()


def test_s3_put_and_get_with_boto3(s3_server, s3_bucket):
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
    )
    client.put_object(Bucket=s3_bucket, Key="hello.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="hello.txt")["Body"].read() == b"hello"
    anonymous = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        aws_access_key_id="nobody",
        aws_secret_access_key="wrong",
        region_name=s3_server.region,
    )
    with pytest.raises(anonymous.exceptions.ClientError):
        anonymous.get_object(Bucket=s3_bucket, Key="hello.txt")


async def test_nats_jetstream_publish_dedupes(nats_server):
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        stream = f"S{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        first = await js.publish(f"{stream}.x", b"1", headers={"Nats-Msg-Id": "m1"})
        again = await js.publish(f"{stream}.x", b"1", headers={"Nats-Msg-Id": "m1"})
        assert first.seq == 1 and again.duplicate
        assert (await js.stream_info(stream)).state.messages == 1
    finally:
        await nc.close()


async def test_nats_restart_keeps_jetstream_data():
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.a", b"1")
        await nc.close()
        server.restart()
        nc = await nats.connect(server.url)
        try:
            assert (await nc.jetstream().stream_info("KEEP")).state.messages == 1
        finally:
            await nc.close()


def test_redis_ping(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_a_failed_start_reports_the_log_tail():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = RedisServer(port=busy.getsockname()[1], timeout=10)
        with pytest.raises(ServerError, match=r"(?s)exited during start-up.*last lines"):
            server.start()
        server.close()


def test_a_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerError, match="pip install no-such-dist"):
        find_binary("no-such-server", env_var="EARTHKEEP_NO_SUCH_BIN", dist="no-such-dist")


def test_free_ports_are_distinct():
    ports = free_ports(20)
    assert len(set(ports)) == 20


def test_network_beyond_loopback_is_blocked():
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback"):
        sock.connect(("192.0.2.1", 80))
    with pytest.raises(ConnectionRefusedError, match="loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket(socket.AF_UNIX) as unix, pytest.raises(FileNotFoundError):
        unix.connect("/nonexistent/socket")  # AF_UNIX is not blocked
    for family, host in ((socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as sock, pytest.raises(OSError) as refused:
            sock.connect((host, free_port()))  # loopback passes the guard: a real refusal
        assert "loopback" not in str(refused.value)
