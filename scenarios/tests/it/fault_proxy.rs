//! Tests of `mqtt_scenarios::live::fault_proxy` over real loopback sockets: a test client talks
//! through the proxy to an echo server that also reports what it received and when its peer
//! closed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mqtt_scenarios::live::fault_proxy::{FaultProxy, Flow, ProxyOptions};
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
    /// Its peer closed (end of stream, or an error other than a reset).
    Closed,
    /// Its peer reset the connection (RST).
    Reset,
}

/// An echo server on loopback: writes back every byte it reads and reports it.
struct Echo {
    address: SocketAddr,
    events: mpsc::Receiver<EchoEvent>,
    /// Connections it accepted.
    accepted: Arc<AtomicUsize>,
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
        let accepted = Arc::new(AtomicUsize::new(0));
        let accepted_by_task = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted_by_task.fetch_add(1, Ordering::Relaxed);
                let sender = sender.clone();
                connections.spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let ending = loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) => break EchoEvent::Closed,
                            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => break EchoEvent::Reset,
                            Err(_) => break EchoEvent::Closed,
                            Ok(count) => {
                                let _ = sender.send(EchoEvent::Received(buffer[..count].to_vec())).await;
                                if stream.write_all(&buffer[..count]).await.is_err() {
                                    break EchoEvent::Closed;
                                }
                            }
                        }
                    };
                    let _ = sender.send(ending).await;
                });
            }
        });
        Echo {
            address,
            events,
            accepted,
            task,
        }
    }

    /// How many connections it has accepted.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
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

    /// Expects its peer to close, or reset, within 5 s.
    async fn expect_closed(&mut self) {
        match timeout(STEP_TIMEOUT, self.events.recv()).await {
            Ok(Some(EchoEvent::Closed | EchoEvent::Reset)) => {}
            other => panic!("echo server: expected a close, got {other:?}"),
        }
    }

    /// Expects its peer to reset the connection within 5 s, with no bytes before.
    async fn expect_reset(&mut self) {
        match timeout(STEP_TIMEOUT, self.events.recv()).await {
            Ok(Some(EchoEvent::Reset)) => {}
            other => panic!("echo server: expected a reset, got {other:?}"),
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

/// Expects the stream to be reset within 5 s: a read fails with "connection reset", having
/// read nothing before (a resumed stream would deliver bytes, a clean close would read 0).
async fn expect_reset(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    match timeout(STEP_TIMEOUT, stream.read(&mut buffer)).await {
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to be reset, got {other:?}"),
    }
}

/// A proxy to `upstream` in the dead-link mode.
async fn dead_link_proxy(upstream: SocketAddr) -> FaultProxy {
    let options = ProxyOptions {
        dead_link: true,
        ..ProxyOptions::default()
    };
    FaultProxy::start_with(upstream, options).await.expect("proxy starts")
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

#[tokio::test]
async fn a_dead_link_resets_a_connection_on_both_sides_when_its_partition_is_repaired() {
    // Goal: in the dead-link mode a partition kills the connections it touches, as under turmoil,
    // instead of letting them resume with a gap in their bytes. Method: echo "before", partition,
    // send "lost" and see nothing arrive while the connection stays open; repair and expect both
    // the client and the server to see a reset with no byte first, and "after", sent by the
    // client once the partition is repaired, never to reach the server. A connection opened
    // after the repair is forwarded as usual.
    let mut echo = Echo::start().await;
    let proxy = dead_link_proxy(echo.address).await;
    assert!(proxy.options().dead_link);
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"before").await;
    assert_eq!(receive(&mut client, 6).await, b"before");
    assert_eq!(echo.received(6).await, b"before");

    proxy.partition();
    send(&mut client, b"lost").await;
    expect_silence(&mut client).await;
    echo.expect_silence().await;
    assert_eq!(proxy.connections_open(), 1, "a partition alone does not close anything");

    proxy.repair();
    // The write may succeed (the reset is still on its way) or fail (it is here): both are fine,
    // what matters is that the bytes never reach the server.
    let _ = timeout(STEP_TIMEOUT, client.write_all(b"after")).await;
    expect_reset(&mut client).await;
    echo.expect_reset().await;
    echo.expect_silence().await;
    eventually("the connection is no longer open", || proxy.connections_open() == 0).await;

    let mut second = connect(proxy.address()).await;
    send(&mut second, b"again").await;
    assert_eq!(receive(&mut second, 5).await, b"again");
    assert_eq!(echo.received(5).await, b"again");
    assert_eq!(echo.accepted(), 2);
}

#[tokio::test]
async fn a_dead_link_resets_a_connection_accepted_during_a_partition_at_once() {
    // Goal: in the dead-link mode a connect during a partition fails, as in the simulation.
    // Method: partition, then connect to the proxy (the kernel completes the handshake) and
    // expect a reset within the deadline, while the server never hears of the connection. After
    // the repair a connection is forwarded as usual.
    let mut echo = Echo::start().await;
    let proxy = dead_link_proxy(echo.address).await;
    proxy.partition();
    let mut client = connect(proxy.address()).await;
    expect_reset(&mut client).await;
    eventually("the proxy accepted the connection", || {
        proxy.connections_accepted() == 1
    })
    .await;
    echo.expect_silence().await;
    assert_eq!(
        echo.accepted(),
        0,
        "the server never hears of a connect during a partition"
    );
    assert_eq!(proxy.connections_open(), 0);

    proxy.repair();
    let mut second = connect(proxy.address()).await;
    send(&mut second, b"after").await;
    assert_eq!(receive(&mut second, 5).await, b"after");
    assert_eq!(echo.received(5).await, b"after");
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn a_one_way_partition_is_a_partition_for_the_dead_link() {
    // Goal: in the dead-link mode a partition of either direction alone kills connections as a
    // full one does. Method: for each direction, partition it alone on an open connection and
    // check the other direction still flows (only the partitioned one loses "x"); a connect
    // during the one-way partition is reset at once; repairing it resets the open connection on
    // both sides.
    for flow in Flow::ALL {
        let mut echo = Echo::start().await;
        let proxy = dead_link_proxy(echo.address).await;
        let mut client = connect(proxy.address()).await;
        send(&mut client, b"ping").await;
        assert_eq!(receive(&mut client, 4).await, b"ping");
        assert_eq!(echo.received(4).await, b"ping");

        proxy.partition_flow(flow);
        send(&mut client, b"x").await;
        match flow {
            // The server never gets "x", so it echoes nothing.
            Flow::ClientToBroker => echo.expect_silence().await,
            // The server gets "x", and its echo is lost.
            Flow::BrokerToClient => assert_eq!(echo.received(1).await, b"x", "{flow:?}"),
        }
        expect_silence(&mut client).await;
        assert_eq!(proxy.bytes_dropped(flow), 1, "{flow:?}");

        let mut during = connect(proxy.address()).await;
        expect_reset(&mut during).await;
        assert_eq!(
            echo.accepted(),
            1,
            "{flow:?}: the server never hears of a connect during a partition"
        );

        proxy.repair_flow(flow);
        expect_reset(&mut client).await;
        echo.expect_reset().await;
    }
}

#[tokio::test]
async fn a_dead_link_waits_for_every_partitioned_direction_to_be_repaired_and_delivers_nothing_meanwhile() {
    // Goal: a direction that lost bytes never delivers again, even while the other is still
    // partitioned, so no stream resumes with a gap. Method: partition both ways, send "lost",
    // repair client-to-broker only and send "gap": the server gets nothing and the connection
    // stays open; repair broker-to-client too and expect the reset on both sides.
    let mut echo = Echo::start().await;
    let proxy = dead_link_proxy(echo.address).await;
    let mut client = connect(proxy.address()).await;
    send(&mut client, b"ping").await;
    assert_eq!(receive(&mut client, 4).await, b"ping");
    assert_eq!(echo.received(4).await, b"ping");

    proxy.partition();
    send(&mut client, b"lost").await;
    proxy.repair_flow(Flow::ClientToBroker);
    send(&mut client, b"gap").await;
    echo.expect_silence().await;
    expect_silence(&mut client).await;
    assert_eq!(proxy.connections_open(), 1);
    eventually("both chunks were dropped", || {
        proxy.bytes_dropped(Flow::ClientToBroker) == 7
    })
    .await;

    proxy.repair_flow(Flow::BrokerToClient);
    expect_reset(&mut client).await;
    echo.expect_reset().await;
}

#[tokio::test]
async fn hold_and_release_in_the_dead_link_mode_deliver_every_byte_without_a_reset() {
    // Goal: the dead-link mode changes partitions only: a hold is an outage TCP rides out, and
    // latency still delays. Method: with 100 ms latency each way, hold, send three chunks, see
    // nothing arrive; release and read them back whole and in order on the same connection,
    // then echo once more.
    let mut echo = Echo::start().await;
    let proxy = dead_link_proxy(echo.address).await;
    let mut client = connect(proxy.address()).await;
    let latency = Duration::from_millis(100);
    proxy.set_latency(latency);
    proxy.hold();
    for chunk in [&b"one"[..], b"two", b"three"] {
        send(&mut client, chunk).await;
    }
    expect_silence(&mut client).await;
    echo.expect_silence().await;

    proxy.release();
    assert_eq!(echo.received(11).await, b"onetwothree");
    assert_eq!(receive(&mut client, 11).await, b"onetwothree");
    let started = Instant::now();
    send(&mut client, b"more").await;
    assert_eq!(receive(&mut client, 4).await, b"more");
    assert!(
        started.elapsed() >= 2 * latency,
        "round trip took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.connections_open(), 1);
    assert_eq!(proxy.bytes_dropped(Flow::ClientToBroker), 0);
}
