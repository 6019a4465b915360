//! Tests of `mqtt_client::fault_proxy` over real loopback sockets: a test client talks through the
//! proxy to an echo server that also reports what it received and when its peer closed.

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_client::fault_proxy::{FaultProxy, Flow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// How long any single network step of these tests may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long "nothing arrives" is watched for.
const SILENCE: Duration = Duration::from_millis(300);

/// What the echo server saw.
#[derive(Debug, PartialEq, Eq)]
enum EchoEvent {
    Received(Vec<u8>),
    /// Its peer closed (end of stream or an error).
    Closed,
}

/// An echo server on loopback: writes back every byte it reads and reports it.
struct Echo {
    address: SocketAddr,
    events: mpsc::Receiver<EchoEvent>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo server");
        let address = listener.local_addr().expect("echo address");
        let (sender, events) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let sender = sender.clone();
                connections.spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(count) => {
                                let _ = sender.send(EchoEvent::Received(buffer[..count].to_vec())).await;
                                if stream.write_all(&buffer[..count]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sender.send(EchoEvent::Closed).await;
                });
            }
        });
        Echo { address, events, task }
    }

    /// Collects received bytes until `expected_len` have arrived (at most 5 s).
    async fn received(&mut self, expected_len: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        while bytes.len() < expected_len {
            match timeout(STEP_TIMEOUT, self.events.recv()).await {
                Ok(Some(EchoEvent::Received(chunk))) => bytes.extend_from_slice(&chunk),
                other => panic!("echo server: expected bytes after {bytes:?}, got {other:?}"),
            }
        }
        bytes
    }

    /// Expects no event within [`SILENCE`].
    async fn expect_silence(&mut self) {
        if let Ok(event) = timeout(SILENCE, self.events.recv()).await {
            panic!("echo server: expected nothing, got {event:?}");
        }
    }

    /// Expects its peer to close within 5 s.
    async fn expect_closed(&mut self) {
        match timeout(STEP_TIMEOUT, self.events.recv()).await {
            Ok(Some(EchoEvent::Closed)) => {}
            other => panic!("echo server: expected a close, got {other:?}"),
        }
    }
}

async fn connect(address: SocketAddr) -> TcpStream {
    timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    timeout(STEP_TIMEOUT, stream.write_all(bytes))
        .await
        .expect("write timed out")
        .expect("write failed");
}

/// Reads exactly `len` bytes (at most 5 s).
async fn receive(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    timeout(STEP_TIMEOUT, stream.read_exact(&mut bytes))
        .await
        .expect("read timed out")
        .expect("read failed");
    bytes
}

/// Expects nothing to arrive within [`SILENCE`].
async fn expect_silence(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    if let Ok(read) = timeout(SILENCE, stream.read(&mut buffer)).await {
        panic!("expected nothing, read {read:?}");
    }
}

/// Expects the stream to end (a read of 0 or an error) within 5 s.
async fn expect_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    match timeout(STEP_TIMEOUT, stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

/// Polls `condition` every 10 ms for at most 5 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn bytes_pass_through_the_proxy_both_ways() {
    // Goal: with no fault set the proxy is transparent. Method: send through it to the echo
    // server, check the server got the bytes and the client got them back, and the counters.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    assert_eq!(proxy.upstream(), echo.address);
    assert!(proxy.address().ip().is_loopback());
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"hello").await;
    assert_eq!(echo.received(5).await, b"hello");
    assert_eq!(receive(&mut client, 5).await, b"hello");
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.connections_open(), 1);
    assert_eq!(proxy.bytes_forwarded(Flow::ClientToBroker), 5);
    assert_eq!(proxy.bytes_forwarded(Flow::BrokerToClient), 5);
    assert_eq!(proxy.bytes_dropped(Flow::ClientToBroker), 0);
}

#[tokio::test]
async fn a_partition_drops_bytes_sent_during_it_and_repair_resumes_forwarding() {
    // Goal: partition models a dead network. Method: check the echo works, partition, send
    // "lost" and see neither the server nor the client get anything; repair, send "after" and
    // get exactly "after" back: the lost bytes stay lost.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"before").await;
    assert_eq!(receive(&mut client, 6).await, b"before");
    assert_eq!(echo.received(6).await, b"before");

    proxy.partition();
    send(&mut client, b"lost").await;
    expect_silence(&mut client).await;
    echo.expect_silence().await;
    assert_eq!(proxy.bytes_dropped(Flow::ClientToBroker), 4);

    proxy.repair();
    send(&mut client, b"after").await;
    assert_eq!(receive(&mut client, 5).await, b"after");
    assert_eq!(echo.received(5).await, b"after");
}

#[tokio::test]
async fn a_close_during_a_partition_reaches_the_other_side_only_after_repair() {
    // Goal: a partitioned peer that gives up is silent, as over a dead network, so a broker has
    // to notice by keep alive. Method: partition, close the client, see the server notice
    // nothing; repair and see the close arrive.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"x").await;
    assert_eq!(receive(&mut client, 1).await, b"x");
    assert_eq!(echo.received(1).await, b"x");

    proxy.partition();
    drop(client);
    echo.expect_silence().await;
    proxy.repair();
    echo.expect_closed().await;
    eventually("the connection is no longer open", || proxy.connections_open() == 0).await;
}

#[tokio::test]
async fn hold_buffers_bytes_and_release_delivers_them_in_order() {
    // Goal: hold models a short outage TCP rides out. Method: hold, send three chunks apart,
    // see nothing arrive; release and read them back whole and in order.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    proxy.hold();
    for chunk in [&b"one"[..], b"two", b"three"] {
        send(&mut client, chunk).await;
        sleep(Duration::from_millis(20)).await;
    }
    expect_silence(&mut client).await;
    echo.expect_silence().await;

    proxy.release();
    assert_eq!(echo.received(11).await, b"onetwothree");
    assert_eq!(receive(&mut client, 11).await, b"onetwothree");
    assert_eq!(proxy.bytes_dropped(Flow::ClientToBroker), 0);
}

#[tokio::test]
async fn reset_closes_both_sides_and_new_connections_are_still_forwarded() {
    // Goal: reset cuts current connections only. Method: reset an established connection, expect
    // the client's read to end and the server to see a close; then a new connection echoes.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"ping").await;
    assert_eq!(receive(&mut client, 4).await, b"ping");
    assert_eq!(echo.received(4).await, b"ping");

    proxy.reset();
    expect_closed(&mut client).await;
    echo.expect_closed().await;

    let mut second = connect(proxy.address()).await;
    send(&mut second, b"again").await;
    assert_eq!(receive(&mut second, 5).await, b"again");
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn latency_delays_delivery_by_at_least_the_set_amount() {
    // Goal: set_latency delays each direction. Method: with 300 ms each way, an echo round trip
    // takes at least 600 ms (and, generously, less than 600 ms + 2 s).
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    let latency = Duration::from_millis(300);
    proxy.set_latency(latency);
    assert_eq!(proxy.latency(Flow::ClientToBroker), latency);
    assert_eq!(proxy.latency(Flow::BrokerToClient), latency);

    let started = Instant::now();
    send(&mut client, b"slow").await;
    send(&mut client, b"ly").await;
    assert_eq!(receive(&mut client, 6).await, b"slowly");
    let elapsed = started.elapsed();
    assert!(elapsed >= 2 * latency, "round trip took {elapsed:?}");
    assert!(
        elapsed < 2 * latency + Duration::from_secs(2),
        "round trip took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_one_direction_partition_drops_only_that_direction() {
    // Goal: a publish can reach the broker while its acknowledgement is lost. Method: partition
    // broker-to-client only; the server gets "x" but the client gets no echo; after the repair
    // only the new bytes come back.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    proxy.partition_flow(Flow::BrokerToClient);
    send(&mut client, b"x").await;
    assert_eq!(echo.received(1).await, b"x");
    expect_silence(&mut client).await;
    assert_eq!(proxy.bytes_dropped(Flow::BrokerToClient), 1);
    assert_eq!(proxy.bytes_dropped(Flow::ClientToBroker), 0);

    proxy.repair_flow(Flow::BrokerToClient);
    send(&mut client, b"y").await;
    assert_eq!(receive(&mut client, 1).await, b"y");
}

#[tokio::test]
async fn recording_captures_what_each_side_sent_even_when_dropped() {
    // Goal: tests can decode what a client really sent. Method: record, exchange "ping", then
    // send "lost" during a client-to-broker partition; the recording of connection 0 has all
    // the client's bytes, and the server's echo.
    let echo = Echo::start().await;
    let proxy = FaultProxy::start_recording(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"ping").await;
    assert_eq!(receive(&mut client, 4).await, b"ping");
    proxy.partition_flow(Flow::ClientToBroker);
    send(&mut client, b"lost").await;
    eventually("the partition dropped 4 bytes", || {
        proxy.bytes_dropped(Flow::ClientToBroker) == 4
    })
    .await;

    assert_eq!(proxy.recorded(0, Flow::ClientToBroker), b"pinglost");
    assert_eq!(proxy.recorded(0, Flow::BrokerToClient), b"ping");
    assert!(proxy.recorded(1, Flow::ClientToBroker).is_empty());
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    // Goal: no forwarding task outlives the proxy. Method: drop it with a connection open and
    // expect both the client and the server to see the connection end.
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.expect("proxy starts");
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"hi").await;
    assert_eq!(receive(&mut client, 2).await, b"hi");
    assert_eq!(echo.received(2).await, b"hi");
    drop(proxy);
    expect_closed(&mut client).await;
    echo.expect_closed().await;
}
