//! The broker on turmoil's simulated network, driven by our client. Goal: the behaviour that only
//! shows over time and through network faults (keep alive, will delay, session expiry, QoS 1 across
//! a dead link), checked as exact windows of simulated time; and that a run is a pure function of
//! its seed.
//!
//! Method: each test builds a [`World`] (explicit seed and epoch, 10 ms ticks, bounded simulated
//! duration) with the broker host (a factory: it can crash and restart) and a few client hosts,
//! each running several MQTT clients. The test applies faults between steps at exact instants
//! (partition, one way or both, repair, hold, release, crash, restart); the hosts record what they
//! see in a shared trace and hand their observations out; assertions run after the simulation, and
//! a failure prints the seed and the trace. Links have no latency ([`Network::Exact`]) except in the
//! determinism and seed-sweep tests, so a hop costs at most one tick and windows are a tick or two
//! wide.

mod world;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::Pattern;
use mqtt_client::{ClientError, ConnectOptions, Event, LastWill, Message, ReconnectPolicy};
use mqtt_protocol::{Disconnect, Packet, Properties, Publish, PublishAck, QoS, ReasonCode, SubscriptionOptions};

use world::{
    connect_packet, describe_publish, instant, now, probe, shared, sleep_until, Network, Peer, Shared, World,
    BROKER_HOST, TICK,
};

const fn s(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

const fn ms(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds)
}

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions::with_qos(QoS::AtLeastOnce)
}

/// A QoS 1 will, with a Will Delay Interval if given.
fn will(topic: &str, payload: &str, delay_s: Option<u32>) -> LastWill {
    let mut properties = Properties::default();
    if delay_s.is_some() {
        properties.will_delay_interval_s = delay_s;
    }
    LastWill {
        topic: topic.to_owned(),
        payload: Bytes::from(payload.to_owned()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    }
}

/// `from <= at <= from + slack`, in simulated time.
fn assert_within(what: &str, at: Duration, from: Duration, slack: Duration) {
    assert!(
        from <= at && at <= from + slack,
        "{what} at {}, expected within [{}, {}]",
        instant(at),
        instant(from),
        instant(from + slack)
    );
}

fn payload(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
}

fn lock<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().expect("no host panicked holding it")
}

/// Goal: keep alive (5.0 MQTT-3.1.2-22): the broker closes a connection it has heard nothing on
/// for 1.5 × the keep alive, counted from the last packet received, and then publishes the will.
/// Method: on host `edge`, two clients with a will, keep alive 10 s and 20 s, publish at 4 s; the
/// 10 s one pings at 14 s (one keep alive after its last packet; its ping counter is checked),
/// the 20 s one would only ping at 24 s. At 16 s the link edge–broker is partitioned: nothing more
/// arrives, and TCP does not notice. A watcher on host `watch` receives the wills: the 10 s one in
/// [14 + 15 s, + 2 ticks] (a tick per hop), the 20 s one in [4 + 30 s, + 2 ticks]. By 40 s the
/// broker has no connection left open: nothing waits forever on a peer that vanished.
#[test]
fn a_silent_client_is_closed_one_and_a_half_keep_alives_after_its_last_packet_and_its_will_goes_out() {
    let mut world = World::new(1, s(60), Network::Exact);
    let pings: Shared<Vec<(String, u64)>> = shared();
    let wills: Shared<Vec<(Duration, Publish)>> = shared();

    let (trace, pings_out) = (world.trace.clone(), pings.clone());
    world.client("edge", async move {
        let mut peers = Vec::new();
        for keep_alive_s in [10, 20] {
            let name = format!("ka-{keep_alive_s}");
            let options = ConnectOptions::new(&name).keep_alive_s(keep_alive_s).will(will(
                &format!("will/{name}"),
                &format!("{name} lost"),
                None,
            ));
            peers.push(Peer::connect(&trace, options).await?);
        }
        sleep_until(s(4)).await;
        for peer in &peers {
            let status = Message::new(format!("status/{}", peer.name), "alive", QoS::AtMostOnce);
            peer.client.publish(status).await?.wait().await?;
            trace.record(&peer.name, "published status/.. (QoS 0)");
        }
        sleep_until(s(16) - TICK).await;
        for peer in &peers {
            let pings_sent = peer.client.statistics().pings_sent.load(Ordering::Relaxed);
            lock(&pings_out).push((peer.name.clone(), pings_sent));
        }
        // Partitioned at 16 s: each client finds out from its own unanswered ping.
        for peer in &mut peers {
            peer.wait_for(s(50), |event| matches!(event, Event::Disconnected { .. }))
                .await;
        }
        Ok(())
    });

    let (trace, wills_out) = (world.trace.clone(), wills.clone());
    world.client("watch", async move {
        let mut watcher = Peer::connect(&trace, ConnectOptions::new("watcher")).await?;
        watcher.client.subscribe_one("will/#", qos1()).await?;
        // Both wills, or whatever came by 50 s.
        let received = watcher.messages_until(s(50), 2).await;
        lock(&wills_out).extend(received);
        watcher.client.disconnect().await?;
        // Long enough for the broker to finish closing every connection (1 s linger).
        sleep_until(s(40)).await;
        Ok(())
    });

    world.advance_to(s(16));
    world.partition("edge", BROKER_HOST);
    world.finish();

    let statistics = &world.broker_statistics()[0];
    assert_eq!(statistics.connections_accepted.load(Ordering::Relaxed), 3);
    assert_eq!(
        statistics.connections_open.load(Ordering::Relaxed),
        0,
        "no task is left behind for a connection whose peer vanished"
    );

    assert_eq!(
        *lock(&pings),
        [("ka-10".to_owned(), 1), ("ka-20".to_owned(), 0)],
        "the last packets: ka-10's ping at 14 s, ka-20's publish at 4 s"
    );
    let wills = lock(&wills);
    let topics: Vec<&str> = wills.iter().map(|(_, publish)| publish.topic.as_str()).collect();
    assert_eq!(topics, ["will/ka-10", "will/ka-20"], "each will exactly once");
    for (at, publish) in wills.iter() {
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        let (last_packet, keep_alive) = if publish.topic == "will/ka-10" {
            assert_eq!(payload(publish), "ka-10 lost");
            (s(14), s(10))
        } else {
            assert_eq!(payload(publish), "ka-20 lost");
            (s(4), s(20))
        };
        assert_within(
            &format!("{} (last packet {})", publish.topic, instant(last_packet)),
            *at,
            last_packet + keep_alive * 3 / 2,
            2 * TICK,
        );
    }
}

/// Goal: Will Delay Interval (5.0 §3.1.3.2.2, MQTT-3.1.3-9): after DISCONNECT 0x04 (Disconnect with
/// Will Message) the will goes out when the delay has passed, not before, while the session (60 s)
/// lives on. Method: `wd-1` on host `edge` (will delay 5 s, session expiry 60 s) disconnects with
/// 0x04 at 3 s; the watcher on host `watch` must get the will once, in [8 s, 8 s + 2 ticks].
#[test]
fn a_will_with_a_delay_goes_out_exactly_the_delay_after_a_disconnect_with_will_message() {
    let mut world = World::new(2, s(60), Network::Exact);
    let wills: Shared<Vec<(Duration, Publish)>> = shared();

    let trace = world.trace.clone();
    world.client("edge", async move {
        let options =
            ConnectOptions::new("wd-1")
                .session_expiry_interval_s(60)
                .will(will("will/wd-1", "wd-1 gone", Some(5)));
        let peer = Peer::connect(&trace, options).await?;
        sleep_until(s(3)).await;
        trace.record("wd-1", "DISCONNECT 0x04");
        peer.client
            .disconnect_with(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, Properties::default())
            .await?;
        Ok(())
    });

    watch_wills(&mut world, &wills, s(20), 10);

    world.finish();

    let wills = lock(&wills);
    assert_eq!(wills.len(), 1, "the will exactly once: {wills:?}");
    let (at, publish) = &wills[0];
    assert_eq!(
        (publish.topic.as_str(), payload(publish).as_str()),
        ("will/wd-1", "wd-1 gone")
    );
    assert_within("the delayed will", *at, s(3) + s(5), 2 * TICK);
}

/// Goal: MQTT-3.1.3-9: a new connection to the session within the will delay cancels the will.
/// Method: `wd-2` (will delay 5 s, session expiry 60 s) disconnects with 0x04 at 3 s and resumes
/// its session 3 s later (Clean Start 0, through the probe: see the last test for why not our
/// client), holds it until 16 s and disconnects normally; the watcher must get no will by 17 s.
#[test]
fn a_client_that_resumes_its_session_within_the_will_delay_cancels_the_will() {
    let mut world = World::new(3, s(60), Network::Exact);
    let wills: Shared<Vec<(Duration, Publish)>> = shared();
    let session_present: Shared<Vec<bool>> = shared();

    let (trace, session_present_out) = (world.trace.clone(), session_present.clone());
    world.client("edge", async move {
        let options =
            ConnectOptions::new("wd-2")
                .session_expiry_interval_s(60)
                .will(will("will/wd-2", "wd-2 gone", Some(5)));
        let peer = Peer::connect(&trace, options).await?;
        sleep_until(s(3)).await;
        trace.record("wd-2", "DISCONNECT 0x04");
        peer.client
            .disconnect_with(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, Properties::default())
            .await?;
        sleep_until(s(6)).await;
        let mut resumed = probe().await?;
        resumed.send(&connect_packet("wd-2", false, 60)).await?;
        let connack = resumed
            .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), s(1))
            .await?;
        if let Packet::ConnAck(connack) = &connack {
            trace.record(
                "wd-2 (probe)",
                format!("connack session_present={}", u8::from(connack.session_present)),
            );
            lock(&session_present_out).push(connack.session_present);
        }
        sleep_until(s(16)).await;
        resumed.send(&Packet::Disconnect(Disconnect::default())).await?;
        resumed.close().await;
        Ok(())
    });

    watch_wills(&mut world, &wills, s(17), 10);

    world.finish();

    assert_eq!(*lock(&session_present), [true], "the session was resumed");
    assert!(lock(&wills).is_empty(), "no will: {:?}", lock(&wills));
}

/// Goal: session expiry (5.0 §3.1.2.11.2): a session outlives a normal DISCONNECT for its expiry
/// interval, queueing QoS 1 messages, and is gone after it. Method: `se-1` on host `edge`
/// (session expiry 20 s) subscribes `data/#` at QoS 1 and disconnects normally at 2 s; `se-pub` on
/// host `core` publishes `data/1` at QoS 1 at 7 s (+5 s); `se-1` resumes at 12 s (+10 s, Clean Start
/// 0, through the probe): Session Present 1 and the message; it disconnects normally at 13 s and
/// comes back 25 s later, at 38 s: Session Present 0, and nothing is delivered.
#[test]
fn a_session_keeps_messages_for_its_expiry_interval_after_a_normal_disconnect_and_not_longer() {
    let mut world = World::new(4, s(60), Network::Exact);
    let connacks: Shared<Vec<(Duration, bool)>> = shared();
    let delivered: Shared<Vec<(Duration, Publish)>> = shared();

    let (trace, connacks_out, delivered_out) = (world.trace.clone(), connacks.clone(), delivered.clone());
    world.client("edge", async move {
        let peer = Peer::connect(&trace, ConnectOptions::new("se-1").session_expiry_interval_s(20)).await?;
        peer.client.subscribe_one("data/#", qos1()).await?;
        sleep_until(s(2)).await;
        trace.record("se-1", "DISCONNECT (normal)");
        peer.client.disconnect().await?;

        for (at, leave_at) in [(s(12), Some(s(13))), (s(38), None)] {
            sleep_until(at).await;
            let mut resumed = probe().await?;
            resumed.send(&connect_packet("se-1", false, 20)).await?;
            let connack = resumed
                .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), s(1))
                .await?;
            if let Packet::ConnAck(connack) = &connack {
                trace.record(
                    "se-1 (probe)",
                    format!("connack session_present={}", u8::from(connack.session_present)),
                );
                lock(&connacks_out).push((now(), connack.session_present));
            }
            // Whatever the session held arrives now; ack it.
            while let Ok(packet) = resumed.expect(&Pattern::publish(), ms(500)).await {
                if let Packet::Publish(publish) = packet {
                    trace.record("se-1 (probe)", describe_publish(&publish));
                    if let Some(packet_id) = publish.packet_id {
                        resumed.send(&Packet::PubAck(PublishAck::new(packet_id))).await?;
                    }
                    lock(&delivered_out).push((now(), publish));
                }
            }
            if let Some(leave_at) = leave_at {
                sleep_until(leave_at).await;
            }
            trace.record("se-1 (probe)", "DISCONNECT (normal)");
            resumed.send(&Packet::Disconnect(Disconnect::default())).await?;
            resumed.close().await;
        }
        Ok(())
    });

    let trace = world.trace.clone();
    world.client("core", async move {
        let publisher = Peer::connect(&trace, ConnectOptions::new("se-pub")).await?;
        sleep_until(s(7)).await;
        let outcome = publisher
            .client
            .publish_and_wait(Message::new("data/1", "kept for se-1", QoS::AtLeastOnce))
            .await?;
        trace.record("se-pub", format!("published data/1: {}", outcome.reason_code));
        publisher.client.disconnect().await?;
        Ok(())
    });

    world.finish();

    let connacks = lock(&connacks);
    let session_present: Vec<bool> = connacks.iter().map(|(_, present)| *present).collect();
    assert_eq!(
        session_present,
        [true, false],
        "resumed at +10 s, expired after 25 s away"
    );
    let delivered = lock(&delivered);
    assert_eq!(delivered.len(), 1, "the queued message, once: {delivered:?}");
    let (at, publish) = &delivered[0];
    assert_eq!(
        (publish.topic.as_str(), payload(publish).as_str()),
        ("data/1", "kept for se-1")
    );
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert!(!publish.dup, "never sent before, so no DUP");
    assert_within("the queued message", *at, connacks[0].0, TICK);
}

/// Goal: the session ends when its expiry interval has passed, to the tick: simulated time makes
/// the boundary testable. Method: `exp-1` (session expiry 20 s) disconnects normally at 1 s; the
/// probe resumes it 50 ms before the interval ends (Session Present 1) and disconnects at 21 s,
/// which restarts the interval; it comes back 50 ms after the new end: Session Present 0.
#[test]
fn a_session_expires_when_its_interval_has_passed_and_not_a_moment_sooner() {
    let mut world = World::new(5, s(60), Network::Exact);
    let session_present: Shared<Vec<bool>> = shared();

    let (trace, session_present_out) = (world.trace.clone(), session_present.clone());
    world.client("edge", async move {
        let peer = Peer::connect(&trace, ConnectOptions::new("exp-1").session_expiry_interval_s(20)).await?;
        peer.client.subscribe_one("data/#", qos1()).await?;
        sleep_until(s(1)).await;
        peer.client.disconnect().await?;
        // The DISCONNECT went at 1 s, the next at 21 s; each arrives within a tick.
        for (at, leave_at) in [(s(21) - ms(50), Some(s(21))), (s(41) + ms(50), None)] {
            sleep_until(at).await;
            let mut resumed = probe().await?;
            resumed.send(&connect_packet("exp-1", false, 20)).await?;
            let connack = resumed
                .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), s(1))
                .await?;
            if let Packet::ConnAck(connack) = &connack {
                trace.record(
                    "exp-1 (probe)",
                    format!("connack session_present={}", u8::from(connack.session_present)),
                );
                lock(&session_present_out).push(connack.session_present);
            }
            if let Some(leave_at) = leave_at {
                sleep_until(leave_at).await;
            }
            resumed.send(&Packet::Disconnect(Disconnect::default())).await?;
            resumed.close().await;
        }
        Ok(())
    });

    world.finish();

    assert_eq!(*lock(&session_present), [true, false]);
}

/// What a QoS 1 subscriber saw, for [`qos1_across_a_partition`].
struct Qos1Outcome {
    trace: Vec<String>,
    /// Messages per subscriber, in arrival order.
    received: BTreeMap<String, Vec<(Duration, Publish)>>,
    /// Session Present of each CONNACK, per subscriber.
    connects: BTreeMap<String, Vec<bool>>,
    /// The wills the watcher received.
    wills: Vec<(Duration, Publish)>,
}

const QOS1_PAYLOADS: [&str; 5] = ["m1", "m2", "m3", "m4", "m5"];

/// Two subscribers with persistent sessions (60 s), a will each, and reconnect (500 ms doubling to
/// 2 s: failed connects during a partition leak ephemeral ports in turmoil) on host `edge`:
/// `sub-a` keep alive 4 s (the broker gives up on it first, at 1.5 × 4 s), `sub-b` keep alive 10 s
/// with a 2 s ping timeout (it gives up first, and its reconnect takes the session over from a
/// connection the broker still thinks alive). On host `core`, `pub` publishes m1..m5 at QoS 1 at
/// 1, 2.5, 3, 9 and 16 s and a watcher takes the wills. The link edge–broker is partitioned from
/// 2 s to 12 s.
fn qos1_across_a_partition(seed: u64, network: Network) -> Qos1Outcome {
    let mut world = World::new(seed, s(90), network);
    let received: Shared<BTreeMap<String, Vec<(Duration, Publish)>>> = shared();
    let connects: Shared<BTreeMap<String, Vec<bool>>> = shared();
    let wills: Shared<Vec<(Duration, Publish)>> = shared();

    let (trace, received_out, connects_out) = (world.trace.clone(), received.clone(), connects.clone());
    world.client("edge", async move {
        let reconnect = ReconnectPolicy {
            delay_initial: ms(500),
            delay_max: s(2),
            attempts_max: 30,
        };
        let mut peers = Vec::new();
        for (name, keep_alive_s, ping_timeout) in [("sub-a", 4, s(5)), ("sub-b", 10, s(2))] {
            let mut options = ConnectOptions::new(name)
                .keep_alive_s(keep_alive_s)
                .session_expiry_interval_s(60)
                .will(will(&format!("will/{name}"), &format!("{name} lost"), None))
                .reconnect(reconnect);
            options.ping_timeout = ping_timeout;
            let peer = Peer::connect(&trace, options).await?;
            peer.client.subscribe_one("q/#", qos1()).await?;
            peers.push(peer);
        }
        // Each until it has every message (duplicates aside), or 60 s.
        let collect = |mut peer: Peer| async move {
            let mut events = Vec::new();
            let mut distinct = std::collections::BTreeSet::new();
            while distinct.len() < QOS1_PAYLOADS.len() {
                let Some((at, event)) = peer.wait_for(s(60), |_| true).await else {
                    break;
                };
                if let Event::Message(publish) = &event {
                    distinct.insert(payload(publish));
                }
                events.push((at, event));
            }
            (peer, events)
        };
        let peer_b = peers.pop().expect("two peers");
        let peer_a = peers.pop().expect("two peers");
        let ((peer_a, events_a), (peer_b, events_b)) = tokio::join!(collect(peer_a), collect(peer_b));
        for (peer, events) in [(&peer_a, events_a), (&peer_b, events_b)] {
            let mut sessions = Vec::new();
            let mut messages = Vec::new();
            for (at, event) in events {
                match event {
                    Event::Connected { session_present, .. } => sessions.push(session_present),
                    Event::Message(publish) => messages.push((at, publish)),
                    _ => {}
                }
            }
            lock(&connects_out).insert(peer.name.clone(), sessions);
            lock(&received_out).insert(peer.name.clone(), messages);
        }
        peer_a.client.disconnect().await?;
        peer_b.client.disconnect().await?;
        Ok(())
    });

    let (trace, wills_out) = (world.trace.clone(), wills.clone());
    world.client("core", async move {
        let mut watcher = Peer::connect(&trace, ConnectOptions::new("watcher")).await?;
        watcher.client.subscribe_one("will/#", qos1()).await?;
        let publisher = Peer::connect(&trace, ConnectOptions::new("pub")).await?;
        let publish_times = [ms(1000), ms(2500), ms(3000), ms(9000), ms(16000)];
        for (at, payload) in publish_times.into_iter().zip(QOS1_PAYLOADS) {
            sleep_until(at).await;
            let outcome = publisher
                .client
                .publish_and_wait(Message::new(format!("q/{payload}"), payload, QoS::AtLeastOnce))
                .await?;
            trace.record("pub", format!("published {payload}: {}", outcome.reason_code));
        }
        // The wills of both subscribers' dead connections, by 40 s.
        let received = watcher.messages_until(s(40), 2).await;
        lock(&wills_out).extend(received);
        publisher.client.disconnect().await?;
        watcher.client.disconnect().await?;
        Ok(())
    });

    world.advance_to(s(2));
    world.partition("edge", BROKER_HOST);
    world.advance_to(s(12));
    world.repair("edge", BROKER_HOST);
    let trace = world.finish();

    let received = std::mem::take(&mut *lock(&received));
    let connects = std::mem::take(&mut *lock(&connects));
    let wills = std::mem::take(&mut *lock(&wills));
    Qos1Outcome {
        trace,
        received,
        connects,
        wills,
    }
}

/// QoS 1 delivered at least once, in order: each payload first arrives in publish order, and a
/// second copy of a message always carries DUP. Returns the DUP flag of each first arrival.
fn assert_at_least_once_in_order(name: &str, messages: &[(Duration, Publish)]) -> Vec<(String, bool)> {
    let mut firsts: Vec<(String, bool)> = Vec::new();
    for (at, publish) in messages {
        assert_eq!(publish.qos, QoS::AtLeastOnce, "{name}: {publish:?}");
        let text = payload(publish);
        if firsts.iter().any(|(seen, _)| *seen == text) {
            assert!(publish.dup, "{name}: a second {text} without DUP at {}", instant(*at));
        } else {
            firsts.push((text, publish.dup));
        }
    }
    let order: Vec<&str> = firsts.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(order, QOS1_PAYLOADS, "{name}: none lost, in order");
    firsts
}

/// Goal: QoS 1 across a dead link (MQTT-4.4.0-1, MQTT-4.6.0-2): nothing is lost, what was in flight
/// is resent with DUP after the session resumes, what was queued offline goes out fresh, in order;
/// the will of each dead connection goes out once. Method: [`qos1_across_a_partition`] without
/// latency. `sub-a`'s connection is closed by the broker at 1.5 × 4 s: m2 and m3 were in flight on
/// it (resent with DUP), m4 was queued (no DUP), and its will goes out at that close. `sub-b`
/// reconnects while the broker still holds its old connection (a takeover): m2, m3 and m4 were
/// in flight on it (all DUP), and its will goes out at the takeover.
#[test]
fn qos1_messages_survive_a_partition_and_are_resent_with_dup_when_the_session_resumes() {
    let outcome = qos1_across_a_partition(6, Network::Exact);

    for name in ["sub-a", "sub-b"] {
        assert_eq!(
            outcome.connects[name],
            [false, true],
            "{name}: one reconnect, session resumed"
        );
    }
    let firsts_a = assert_at_least_once_in_order("sub-a", &outcome.received["sub-a"]);
    let dup_a: Vec<bool> = firsts_a.iter().map(|(_, dup)| *dup).collect();
    assert_eq!(
        dup_a,
        [false, true, true, false, false],
        "sub-a: m2, m3 resent, m4 queued"
    );
    let firsts_b = assert_at_least_once_in_order("sub-b", &outcome.received["sub-b"]);
    let dup_b: Vec<bool> = firsts_b.iter().map(|(_, dup)| *dup).collect();
    assert_eq!(dup_b, [false, true, true, true, false], "sub-b: m2, m3, m4 resent");

    let wills: Vec<(&str, Duration)> = outcome
        .wills
        .iter()
        .map(|(at, publish)| (publish.topic.as_str(), *at))
        .collect();
    assert_eq!(wills.len(), 2, "one will per dead connection: {wills:?}");
    // sub-a: its last packet (the PUBACK of m1) reached the broker shortly after 1 s.
    assert_eq!(wills[0].0, "will/sub-a");
    assert_within("sub-a's will", wills[0].1, s(7), ms(100));
    // sub-b: at the takeover, after the repair (12 s) and before the broker would have given up.
    assert_eq!(wills[1].0, "will/sub-b");
    assert_within("sub-b's will", wills[1].1, s(12), s(4));
}

/// Goal: exactly once (MQTT-4.3.3, MQTT-4.6.0-2) where at least once duplicates: when the
/// client's acknowledgements are lost, the broker resends with DUP after the session resumes; a
/// QoS 1 subscriber may get the message again (with DUP), a QoS 2 subscriber must not. Method: on
/// host `edge`, `x-sub2` (QoS 2) and `x-sub1` (QoS 1), persistent sessions, keep alive 4 s,
/// reconnect; on host `core`, `x-pub` publishes m1, m2, m3 at QoS 2 at 1, 3 and 12 s. From 2 s to
/// 8 s only the direction edge → broker is cut: m2 reaches both subscribers but their PUBREC and
/// PUBACK are lost. The broker gives up on them at 1.5 × 4 s (and says so, DISCONNECT 0x8D, which
/// gets through); they reconnect after the repair and get m2 again with DUP: `x-sub1` delivers it
/// twice, `x-sub2` once.
#[test]
fn a_lost_acknowledgement_repeats_a_qos1_message_with_dup_but_never_a_qos2_one() {
    let mut world = World::new(10, s(60), Network::Exact);
    let received: Shared<BTreeMap<String, Vec<(Duration, Publish)>>> = shared();

    let (trace, received_out) = (world.trace.clone(), received.clone());
    world.client("edge", async move {
        let reconnect = ReconnectPolicy {
            delay_initial: ms(500),
            delay_max: s(2),
            attempts_max: 30,
        };
        let mut peers = Vec::new();
        for (name, qos) in [("x-sub2", QoS::ExactlyOnce), ("x-sub1", QoS::AtLeastOnce)] {
            let options = ConnectOptions::new(name)
                .keep_alive_s(4)
                .session_expiry_interval_s(60)
                .reconnect(reconnect);
            let peer = Peer::connect(&trace, options).await?;
            peer.client
                .subscribe_one("q/#", SubscriptionOptions::with_qos(qos))
                .await?;
            peers.push(peer);
        }
        for peer in &mut peers {
            let messages = peer.messages_until(s(20), 10).await;
            lock(&received_out).insert(peer.name.clone(), messages);
        }
        for peer in &peers {
            peer.client.disconnect().await?;
        }
        Ok(())
    });

    let trace = world.trace.clone();
    world.client("core", async move {
        let publisher = Peer::connect(&trace, ConnectOptions::new("x-pub")).await?;
        for (at, payload) in [(s(1), "m1"), (s(3), "m2"), (s(12), "m3")] {
            sleep_until(at).await;
            let outcome = publisher
                .client
                .publish_and_wait(Message::new(format!("q/{payload}"), payload, QoS::ExactlyOnce))
                .await?;
            trace.record("x-pub", format!("published {payload}: {}", outcome.reason_code));
        }
        publisher.client.disconnect().await?;
        Ok(())
    });

    world.advance_to(s(2));
    world.partition_oneway("edge", BROKER_HOST);
    world.advance_to(s(8));
    world.repair_oneway("edge", BROKER_HOST);
    world.finish();

    let received = lock(&received);
    let summary = |name: &str| -> Vec<(String, bool)> {
        received[name]
            .iter()
            .map(|(_, publish)| (payload(publish), publish.dup))
            .collect()
    };
    let once = |text: &str| (text.to_owned(), false);
    assert_eq!(
        summary("x-sub1"),
        [once("m1"), once("m2"), ("m2".to_owned(), true), once("m3")],
        "QoS 1: m2 again, with DUP"
    );
    assert_eq!(
        summary("x-sub2"),
        [once("m1"), once("m2"), once("m3")],
        "QoS 2: each exactly once"
    );
}

/// Goal: a short outage that TCP rides out loses nothing and needs no resend. Method: the link
/// between host `edge` (subscriber, keep alive 10 s) and the broker is held from 2 s to 4 s while
/// m2 is published (2.5 s); m2 must arrive at the release, within a tick or two, without DUP, on the
/// same connection; m1 and m3 around it arrive normally.
#[test]
fn a_held_link_delivers_late_but_once_and_without_a_reconnect() {
    let mut world = World::new(7, s(60), Network::Exact);
    let events: Shared<Vec<(Duration, Event)>> = shared();

    let (trace, events_out) = (world.trace.clone(), events.clone());
    world.client("edge", async move {
        let mut sub = Peer::connect(&trace, ConnectOptions::new("held-sub").keep_alive_s(10)).await?;
        sub.client.subscribe_one("q/#", qos1()).await?;
        let mut seen = Vec::new();
        let mut message_count = 0;
        while message_count < 3 {
            let Some((at, event)) = sub.wait_for(s(20), |_| true).await else {
                break;
            };
            message_count += usize::from(matches!(event, Event::Message(_)));
            seen.push((at, event));
        }
        lock(&events_out).extend(seen);
        sub.client.disconnect().await?;
        Ok(())
    });

    let trace = world.trace.clone();
    world.client("core", async move {
        let publisher = Peer::connect(&trace, ConnectOptions::new("pub")).await?;
        for (at, payload) in [(ms(1000), "m1"), (ms(2500), "m2"), (ms(5000), "m3")] {
            sleep_until(at).await;
            publisher
                .client
                .publish_and_wait(Message::new(format!("q/{payload}"), payload, QoS::AtLeastOnce))
                .await?;
            trace.record("pub", format!("published {payload}"));
        }
        publisher.client.disconnect().await?;
        Ok(())
    });

    world.advance_to(s(2));
    world.hold("edge", BROKER_HOST);
    world.advance_to(s(4));
    world.release("edge", BROKER_HOST);
    world.finish();

    let events = lock(&events);
    let messages: Vec<(Duration, &Publish)> = events
        .iter()
        .filter_map(|(at, event)| match event {
            Event::Message(publish) => Some((*at, publish)),
            _ => None,
        })
        .collect();
    let payloads: Vec<(String, bool)> = messages.iter().map(|(_, p)| (payload(p), p.dup)).collect();
    assert_eq!(
        payloads,
        [("m1".into(), false), ("m2".into(), false), ("m3".into(), false)],
        "each once, no DUP"
    );
    assert_within("m2", messages[1].0, s(4), 2 * TICK);
    let connection_events: Vec<&Event> = events
        .iter()
        .map(|(_, event)| event)
        .filter(|event| !matches!(event, Event::Message(_)))
        .collect();
    assert!(
        matches!(connection_events[..], [Event::Connected { .. }]),
        "one connection throughout the hold: {connection_events:?}"
    );
}

/// Goal: the broker host is a factory: a crash loses every connection and, sessions being in
/// memory, every session; the restarted broker serves the clients that reconnect. Method: on host
/// `edge`, `rs-sub` (session expiry 60 s, reconnect 500 ms doubling to 2 s) subscribes `q/#`; on
/// host `core`, `rs-pub` (reconnect too) publishes m1 at 1 s. The broker crashes at 3 s (a clean
/// close for the peers) and restarts at 5 s. `rs-sub` must see the close at once, reconnect after
/// the restart with Session Present 0 and learn its session is gone (m2, published at 8 s, is not
/// delivered); after subscribing again at 9 s it gets m3 (10 s).
#[test]
fn a_restarted_broker_has_forgotten_its_sessions_and_serves_the_clients_that_reconnect() {
    let mut world = World::new(9, s(60), Network::Exact);
    let events: Shared<Vec<(Duration, Event)>> = shared();
    let reconnect = ReconnectPolicy {
        delay_initial: ms(500),
        delay_max: s(2),
        attempts_max: 30,
    };

    let (trace, events_out) = (world.trace.clone(), events.clone());
    world.client("edge", async move {
        let options = ConnectOptions::new("rs-sub")
            .session_expiry_interval_s(60)
            .reconnect(reconnect);
        let mut sub = Peer::connect(&trace, options).await?;
        sub.client.subscribe_one("q/#", qos1()).await?;
        // Everything until 9 s (m2 went at 8 s), then subscribe again.
        let mut seen = Vec::new();
        while let Some((at, event)) = sub.wait_for(s(9), |_| true).await {
            seen.push((at, event));
        }
        sub.client.subscribe_one("q/#", qos1()).await?;
        trace.record("rs-sub", "subscribed again");
        while let Some((at, event)) = sub.wait_for(s(12), |_| true).await {
            seen.push((at, event));
        }
        lock(&events_out).extend(seen);
        sub.client.disconnect().await?;
        Ok(())
    });

    let trace = world.trace.clone();
    world.client("core", async move {
        let options = ConnectOptions::new("rs-pub").reconnect(reconnect);
        let publisher = Peer::connect(&trace, options).await?;
        for (at, payload) in [(s(1), "m1"), (s(8), "m2"), (s(10), "m3")] {
            sleep_until(at).await;
            let outcome = publisher
                .client
                .publish_and_wait(Message::new(format!("q/{payload}"), payload, QoS::AtLeastOnce))
                .await?;
            trace.record("rs-pub", format!("published {payload}: {}", outcome.reason_code));
        }
        sleep_until(s(12)).await;
        publisher.client.disconnect().await?;
        Ok(())
    });

    world.advance_to(s(3));
    world.crash_broker();
    world.advance_to(s(5));
    world.restart_broker();
    world.finish();

    assert_eq!(world.broker_statistics().len(), 2, "the factory ran twice");
    let events = lock(&events);
    let described: Vec<String> = events
        .iter()
        .filter(|(_, event)| !matches!(event, Event::Reconnecting { .. }))
        .map(|(_, event)| match event {
            Event::Message(publish) => format!("message {}", payload(publish)),
            Event::Connected { session_present, .. } => format!("connected session_present={session_present}"),
            Event::SessionDiscarded { .. } => "session discarded".to_owned(),
            Event::Disconnected { .. } => "disconnected".to_owned(),
            Event::Reconnecting { .. } => unreachable!("filtered out"),
        })
        .collect();
    assert_eq!(
        described,
        [
            "connected session_present=false",
            "message m1",
            "disconnected",
            "session discarded",
            "connected session_present=false",
            "message m3",
        ],
        "{events:?}"
    );
    let disconnected_at = events
        .iter()
        .find(|(_, event)| matches!(event, Event::Disconnected { .. }))
        .map(|(at, _)| *at)
        .expect("a disconnect");
    assert_within("the close seen by rs-sub", disconnected_at, s(3), TICK);
    let reconnected_at = events
        .iter()
        .rfind(|(_, event)| matches!(event, Event::Connected { .. }))
        .map(|(at, _)| *at)
        .expect("a reconnect");
    assert!(
        reconnected_at > s(5),
        "reconnected at {} after the restart",
        instant(reconnected_at)
    );
}

/// Goal: a simulated run is a pure function of its seed (DESIGN: determinism is a tested
/// property). Method: the QoS 1 partition scenario with random latency (turmoil's, drawn from the
/// seed), then with a random host order too, each run twice with one seed: the traces (time in µs,
/// client, event: connects, messages with topic, payload, DUP and packet id, disconnects,
/// reconnects, faults, the broker's counters) must be identical line for line. Another seed shifts
/// the latencies, so its trace differs. Every run must also keep the QoS 1 guarantees.
#[test]
fn the_same_seed_replays_the_same_trace_and_another_seed_another() {
    for network in [Network::Random, Network::Shuffled] {
        let first = qos1_across_a_partition(42, network);
        let second = qos1_across_a_partition(42, network);
        let other = qos1_across_a_partition(43, network);
        for outcome in [&first, &second, &other] {
            for name in ["sub-a", "sub-b"] {
                assert_at_least_once_in_order(name, &outcome.received[name]);
            }
        }
        assert!(first.trace.len() > 20, "a trace worth comparing: {:?}", first.trace);
        let length = first.trace.len().max(second.trace.len());
        if let Some(index) = (0..length).find(|&i| first.trace.get(i) != second.trace.get(i)) {
            panic!(
                "{network:?}: seed 42 diverged at line {index}:\n  first:  {:?}\n  second: {:?}",
                first.trace.get(index),
                second.trace.get(index)
            );
        }
        assert_ne!(
            first.trace, other.trace,
            "{network:?}: seeds 42 and 43 gave the same run"
        );
    }
}

/// Goal: a new `Client` (say, after an application restart) resumes a session the broker kept.
/// Asking with Clean Start 0 and a persistent session declares it holds that session's state,
/// possibly empty, so Session Present 1 is accepted (5.0 MQTT-3.2.2-4 is about clients that lost
/// state after a clean start). Method: `fresh-1` (session expiry 60 s) subscribes and disconnects
/// normally at 1 s; a new client with the same id and Clean Start 0 connects at 2 s and is
/// connected; a probe at 3 s shows the broker still had the session.
#[test]
fn a_new_client_asking_to_resume_a_stored_session_resumes_it() {
    let mut world = World::new(8, s(30), Network::Exact);
    let outcome: Shared<Vec<String>> = shared();

    let (trace, outcome_out) = (world.trace.clone(), outcome.clone());
    world.client("edge", async move {
        let options = || ConnectOptions::new("fresh-1").session_expiry_interval_s(60);
        let peer = Peer::connect(&trace, options()).await?;
        peer.client.subscribe_one("data/#", qos1()).await?;
        sleep_until(s(1)).await;
        peer.client.disconnect().await?;
        sleep_until(s(2)).await;
        let result = Peer::connect(&trace, options().clean_start(false)).await;
        let described = match &result {
            Ok(_) => "connected".to_owned(),
            Err(ClientError::Closed(reason)) => format!("closed: {reason}"),
            Err(error) => format!("failed: {error}"),
        };
        trace.record("fresh-1 (new client)", &described);
        lock(&outcome_out).push(described);
        sleep_until(s(3)).await;
        let mut resumed = probe().await?;
        resumed.send(&connect_packet("fresh-1", false, 60)).await?;
        let connack = resumed.expect(&Pattern::connack(), s(1)).await?;
        if let Packet::ConnAck(connack) = connack {
            lock(&outcome_out).push(format!("probe session_present={}", u8::from(connack.session_present)));
        }
        resumed.send(&Packet::Disconnect(Disconnect::default())).await?;
        resumed.close().await;
        Ok(())
    });

    world.finish();

    let outcome = lock(&outcome);
    assert_eq!(outcome.len(), 2, "{outcome:?}");
    assert_eq!(
        outcome[0], "connected",
        "the new client resumes the session: {outcome:?}"
    );
    assert_eq!(outcome[1], "probe session_present=1", "the broker had kept it");
}

/// Goal: the QoS 1 guarantees do not depend on the interleaving. Method: the partition scenario
/// over a range of seeds, with random latency and a random host order each step; every run must
/// deliver every message at least once, in order, DUP on every second copy, and publish each will
/// once. `SIM_SEEDS=a..b` widens the range (shard it across jobs by range); a failure names its seed.
#[test]
fn qos1_guarantees_hold_for_every_seed_in_the_sweep() {
    let seeds = std::env::var("SIM_SEEDS").ok().map_or(100..116, |range| {
        let (start, end) = range.split_once("..").expect("SIM_SEEDS is a..b");
        start.parse().expect("a number")..end.parse().expect("a number")
    });
    let mut failures = Vec::new();
    for seed in seeds {
        let result = std::panic::catch_unwind(|| {
            let outcome = qos1_across_a_partition(seed, Network::Shuffled);
            for name in ["sub-a", "sub-b"] {
                assert_at_least_once_in_order(name, &outcome.received[name]);
            }
            let mut will_topics: Vec<&str> = outcome.wills.iter().map(|(_, p)| p.topic.as_str()).collect();
            will_topics.sort_unstable();
            assert_eq!(will_topics, ["will/sub-a", "will/sub-b"], "each will once");
        });
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            failures.push(format!("seed {seed}: {}", message.lines().next().unwrap_or_default()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A watcher client on its own host that subscribes to `will/#` and collects what arrives until
/// `deadline` (simulated), at most `count_max` messages; a second copy of a will would show too.
fn watch_wills(world: &mut World, wills: &Shared<Vec<(Duration, Publish)>>, deadline: Duration, count_max: usize) {
    let (trace, wills_out) = (world.trace.clone(), wills.clone());
    world.client("watch", async move {
        let mut watcher = Peer::connect(&trace, ConnectOptions::new("watcher")).await?;
        watcher.client.subscribe_one("will/#", qos1()).await?;
        let received = watcher.messages_until(deadline, count_max).await;
        lock(&wills_out).extend(received);
        watcher.client.disconnect().await?;
        Ok(())
    });
}
