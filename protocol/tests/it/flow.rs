//! The QoS 1/2 flows: packet-id allocation, the sender's and the receiver's state machines.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use mqtt_protocol::flow::*;
use mqtt_protocol::*;
use proptest::prelude::*;

fn message(qos: QoS, payload: &'static str) -> Publish {
    Publish {
        qos,
        topic: "flow/test".into(),
        payload: Bytes::from_static(payload.as_bytes()),
        ..Publish::default()
    }
}

fn ack(packet_id: u16, reason_code: ReasonCode) -> PublishAck {
    PublishAck {
        reason_code,
        ..PublishAck::new(packet_id)
    }
}

fn packet_id_of(publish: &Publish) -> u16 {
    publish.packet_id.expect("a QoS 1 or 2 PUBLISH has a packet id")
}

fn flows_with_window(window: u16) -> OutgoingFlows {
    let mut flows = OutgoingFlows::new(64);
    flows.set_send_quota(window);
    flows
}

/// Everything observable about the flows, to check that a refused ack changes nothing.
fn snapshot(flows: &OutgoingFlows) -> Vec<(u16, FlowState, Option<Publish>, bool)> {
    flows
        .inflight()
        .map(|message| {
            (
                message.packet_id,
                message.state,
                message.publish.cloned(),
                message.resend_pending,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PacketIdAllocator

#[test]
fn allocator_starts_at_one_and_counts_up() {
    let mut allocator = PacketIdAllocator::new();
    assert_eq!(
        (allocator.allocate(), allocator.allocate(), allocator.allocate()),
        (Some(1), Some(2), Some(3))
    );
    assert_eq!(allocator.in_use_count(), 3);
    assert!(allocator.is_in_use(2));
    assert!(!allocator.is_in_use(0));
    assert!(!allocator.is_in_use(4));
}

#[test]
fn allocator_does_not_reuse_a_just_released_id() {
    let mut allocator = PacketIdAllocator::new();
    for _ in 0..3 {
        allocator.allocate();
    }
    assert!(allocator.release(2));
    assert_eq!(allocator.allocate(), Some(4));
    assert!(!allocator.is_in_use(2));
}

#[test]
fn allocator_release_of_an_id_not_in_use_returns_false() {
    let mut allocator = PacketIdAllocator::new();
    assert!(!allocator.release(1));
    assert!(!allocator.release(0));
    let packet_id = allocator.allocate().unwrap();
    assert!(allocator.release(packet_id));
    assert!(!allocator.release(packet_id));
    assert_eq!(allocator.in_use_count(), 0);
}

#[test]
fn allocator_wraps_and_skips_ids_in_use() {
    let mut allocator = PacketIdAllocator::new();
    let all: Vec<u16> = std::iter::from_fn(|| allocator.allocate()).collect();
    assert_eq!(
        all,
        (1..=u16::MAX).collect::<Vec<_>>(),
        "every id once, in order, never 0"
    );
    assert_eq!(allocator.allocate(), None, "all 65535 ids are in use");

    allocator.release(10);
    allocator.release(20);
    assert_eq!(allocator.allocate(), Some(10), "wraps past 65535 to 1 and skips 1..=9");
    assert_eq!(allocator.allocate(), Some(20), "skips 11..=19");
    allocator.release(5);
    allocator.release(65535);
    assert_eq!(allocator.allocate(), Some(65535), "continues after 20 before wrapping");
    assert_eq!(allocator.allocate(), Some(5));
    assert_eq!(allocator.allocate(), None);
}

#[test]
fn allocator_respects_its_in_use_count_max() {
    let mut allocator = PacketIdAllocator::with_in_use_count_max(2);
    assert_eq!(allocator.allocate(), Some(1));
    assert_eq!(allocator.allocate(), Some(2));
    assert_eq!(allocator.allocate(), None);
    allocator.release(1);
    assert_eq!(allocator.allocate(), Some(3));
    assert_eq!(allocator.in_use_count_max(), 2);
}

#[test]
#[should_panic(expected = "at least one id")]
fn allocator_with_no_room_is_a_programmer_error() {
    PacketIdAllocator::with_in_use_count_max(0);
}

// ---------------------------------------------------------------------------------------------
// OutgoingFlows: sending

#[test]
fn qos0_is_sent_without_packet_id_or_dup_and_not_tracked() {
    let mut flows = flows_with_window(1);
    let publish = Publish {
        dup: true,
        packet_id: Some(7),
        ..message(QoS::AtMostOnce, "a")
    };
    let sent = flows.send(publish.clone()).unwrap();
    assert_eq!(
        sent,
        Publish {
            dup: false,
            packet_id: None,
            ..publish
        }
    );
    assert!(flows.is_empty());
    // QoS 0 is never held back by the quota.
    flows.send(message(QoS::AtLeastOnce, "b")).unwrap();
    assert!(flows.send(message(QoS::AtMostOnce, "c")).is_ok());
}

#[test]
fn send_assigns_a_packet_id_and_clears_dup() {
    let mut flows = flows_with_window(10);
    let publish = Publish {
        dup: true,
        packet_id: Some(999),
        ..message(QoS::ExactlyOnce, "a")
    };
    let sent = flows.send(publish.clone()).unwrap();
    assert_eq!(
        sent,
        Publish {
            dup: false,
            packet_id: Some(1),
            ..publish
        }
    );
    assert_eq!(flows.state(1), Some(FlowState::AwaitingPubRec));
    assert_eq!(flows.inflight_count(), 1);
    assert!(flows.is_packet_id_in_use(1));
}

#[test]
fn qos1_flow_ends_with_puback_and_frees_the_id() {
    let mut flows = flows_with_window(10);
    let packet_id = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "a")).unwrap());
    assert_eq!(flows.state(packet_id), Some(FlowState::AwaitingPubAck));

    let completed = flows.handle_puback(&PublishAck::new(packet_id)).unwrap();
    assert_eq!(
        completed,
        Completed {
            packet_id,
            qos: QoS::AtLeastOnce,
            reason_code: ReasonCode::SUCCESS
        }
    );
    assert!(!completed.is_error());
    assert!(flows.is_empty());
    assert!(!flows.is_packet_id_in_use(packet_id));
}

#[test]
fn qos2_flow_goes_through_pubrec_pubrel_pubcomp() {
    let mut flows = flows_with_window(10);
    let packet_id = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "a")).unwrap());

    let pubrel = flows.handle_pubrec(&PublishAck::new(packet_id)).unwrap();
    assert_eq!(
        pubrel,
        Some(PublishAck::new(packet_id)),
        "a PUBREL with the PUBLISH's packet id"
    );
    assert_eq!(flows.state(packet_id), Some(FlowState::AwaitingPubComp));
    let inflight: Vec<_> = flows.inflight().collect();
    assert_eq!(inflight.len(), 1);
    assert_eq!(
        inflight[0].publish, None,
        "the message is discarded once PUBREL is sent"
    );

    let completed = flows.handle_pubcomp(&PublishAck::new(packet_id)).unwrap();
    assert_eq!(
        completed,
        Completed {
            packet_id,
            qos: QoS::ExactlyOnce,
            reason_code: ReasonCode::SUCCESS
        }
    );
    assert!(flows.is_empty());
    assert!(!flows.is_packet_id_in_use(packet_id));
}

#[test]
fn no_matching_subscribers_is_a_success() {
    let mut flows = flows_with_window(10);
    let packet_id = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "a")).unwrap());
    let pubrel = flows
        .handle_pubrec(&ack(packet_id, ReasonCode::NO_MATCHING_SUBSCRIBERS))
        .unwrap();
    assert_eq!(pubrel, Some(PublishAck::new(packet_id)));
}

#[test]
fn puback_error_code_ends_the_flow_and_is_reported() {
    let mut flows = flows_with_window(10);
    let packet_id = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "a")).unwrap());
    let completed = flows
        .handle_puback(&ack(packet_id, ReasonCode::NOT_AUTHORIZED))
        .unwrap();
    assert!(completed.is_error());
    assert_eq!(completed.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert!(flows.is_empty());
    assert!(
        flows.resend_on_resume().is_empty(),
        "an acknowledged message is not retransmitted"
    );
}

#[test]
fn pubrec_error_code_ends_the_flow_without_pubrel() {
    let mut flows = flows_with_window(1);
    let packet_id = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "a")).unwrap());
    assert_eq!(
        flows
            .handle_pubrec(&ack(packet_id, ReasonCode::QUOTA_EXCEEDED))
            .unwrap(),
        None
    );
    assert!(flows.is_empty());
    assert!(!flows.is_packet_id_in_use(packet_id));
    assert!(flows.can_send(), "the quota is returned");
    assert!(
        flows.resend_on_resume().is_empty(),
        "5.0 MQTT-4.4.0-2: not retransmitted"
    );
}

#[test]
fn ack_with_unknown_id_is_unsolicited() {
    let mut flows = flows_with_window(10);
    flows.send(message(QoS::AtLeastOnce, "a")).unwrap();
    let before = snapshot(&flows);

    let unknown = |ack| FlowError::Unsolicited {
        packet_id: 42,
        ack,
        state: None,
    };
    assert_eq!(
        flows.handle_puback(&PublishAck::new(42)),
        Err(unknown(PacketType::PubAck))
    );
    assert_eq!(
        flows.handle_pubrec(&PublishAck::new(42)),
        Err(unknown(PacketType::PubRec))
    );
    assert_eq!(
        flows.handle_pubcomp(&PublishAck::new(42)),
        Err(unknown(PacketType::PubComp))
    );
    assert_eq!(
        flows.handle_puback(&PublishAck::new(0)).unwrap_err().reason_code(),
        Some(ReasonCode::PROTOCOL_ERROR),
        "an ack nothing waits for is a Protocol Error (5.0 §1.2)"
    );
    assert_eq!(snapshot(&flows), before);
    assert!(!flows.is_packet_id_in_use(42));
}

#[test]
fn ack_of_the_wrong_kind_is_unsolicited_and_changes_nothing() {
    let mut flows = flows_with_window(10);
    let qos1 = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "a")).unwrap());
    let qos2 = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "b")).unwrap());
    let before = snapshot(&flows);

    let unsolicited = |packet_id, ack, state| FlowError::Unsolicited {
        packet_id,
        ack,
        state: Some(state),
    };
    assert_eq!(
        flows.handle_puback(&PublishAck::new(qos2)),
        Err(unsolicited(qos2, PacketType::PubAck, FlowState::AwaitingPubRec)),
        "PUBACK for a QoS 2 message"
    );
    assert_eq!(
        flows.handle_pubcomp(&PublishAck::new(qos2)),
        Err(unsolicited(qos2, PacketType::PubComp, FlowState::AwaitingPubRec)),
        "PUBCOMP before PUBREC"
    );
    assert_eq!(
        flows.handle_pubrec(&PublishAck::new(qos1)),
        Err(unsolicited(qos1, PacketType::PubRec, FlowState::AwaitingPubAck)),
        "PUBREC for a QoS 1 message"
    );
    assert_eq!(
        flows.handle_pubcomp(&PublishAck::new(qos1)),
        Err(unsolicited(qos1, PacketType::PubComp, FlowState::AwaitingPubAck)),
        "PUBCOMP for a QoS 1 message"
    );
    assert_eq!(snapshot(&flows), before);

    flows.handle_pubrec(&PublishAck::new(qos2)).unwrap();
    let before = snapshot(&flows);
    assert_eq!(
        flows.handle_pubrec(&PublishAck::new(qos2)),
        Err(unsolicited(qos2, PacketType::PubRec, FlowState::AwaitingPubComp)),
        "a second PUBREC"
    );
    assert_eq!(
        flows.handle_puback(&PublishAck::new(qos2)),
        Err(unsolicited(qos2, PacketType::PubAck, FlowState::AwaitingPubComp)),
        "PUBACK after PUBREC"
    );
    assert_eq!(snapshot(&flows), before);
}

#[test]
fn unknown_pubrec_is_answered_with_a_pubrel_that_releases_the_receivers_id() {
    let mut flows = flows_with_window(10);
    let error = flows.handle_pubrec(&PublishAck::new(9)).unwrap_err();
    assert_eq!(
        error.reply(ProtocolVersion::V5),
        Some(Packet::PubRel(ack(9, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)))
    );
    assert_eq!(
        error.reply(ProtocolVersion::V3_1_1),
        Some(Packet::PubRel(PublishAck::new(9)))
    );
    let error = flows.handle_puback(&PublishAck::new(9)).unwrap_err();
    assert_eq!(
        error.reply(ProtocolVersion::V5),
        None,
        "an unknown PUBACK needs no answer"
    );
}

#[test]
fn out_of_order_acks_complete_the_right_flows() {
    let mut flows = flows_with_window(10);
    let ids: Vec<u16> = (0..5)
        .map(|_| packet_id_of(&flows.send(message(QoS::AtLeastOnce, "m")).unwrap()))
        .collect();
    for &packet_id in [ids[3], ids[0], ids[4]].iter() {
        assert_eq!(
            flows.handle_puback(&PublishAck::new(packet_id)).unwrap().packet_id,
            packet_id
        );
    }
    let left: Vec<u16> = flows.inflight().map(|message| message.packet_id).collect();
    assert_eq!(left, vec![ids[1], ids[2]], "the others stay, in send order");
}

#[test]
fn quota_blocks_sending_until_an_ack_frees_a_slot() {
    let mut flows = OutgoingFlows::new(100);
    flows.set_send_quota(2);
    assert_eq!(flows.window(), 2);
    let first = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "1")).unwrap());
    flows.send(message(QoS::ExactlyOnce, "2")).unwrap();
    assert!(!flows.can_send());
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "3")),
        Err(SendError::QuotaExhausted)
    );
    assert_eq!(flows.inflight_count(), 2, "a refused message is not tracked");

    flows.handle_puback(&PublishAck::new(first)).unwrap();
    assert!(flows.can_send());
    flows.send(message(QoS::AtLeastOnce, "3")).unwrap();
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "4")),
        Err(SendError::QuotaExhausted)
    );
}

#[test]
fn inflight_count_max_caps_a_larger_send_quota() {
    let mut flows = OutgoingFlows::new(1);
    flows.set_send_quota(u16::MAX);
    assert_eq!(flows.window(), 1);
    flows.send(message(QoS::AtLeastOnce, "1")).unwrap();
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "2")),
        Err(SendError::QuotaExhausted)
    );
}

#[test]
fn pubrel_awaiting_pubcomp_still_counts_against_the_quota() {
    let mut flows = flows_with_window(1);
    let packet_id = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "1")).unwrap());
    flows.handle_pubrec(&PublishAck::new(packet_id)).unwrap();
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "2")),
        Err(SendError::QuotaExhausted)
    );
    flows.handle_pubcomp(&PublishAck::new(packet_id)).unwrap();
    assert!(flows.send(message(QoS::AtLeastOnce, "2")).is_ok());
}

#[test]
fn packet_ids_are_not_reused_while_in_flight() {
    let mut flows = OutgoingFlows::new(u16::MAX);
    let mut inflight = BTreeSet::new();
    // Keep one long-lived message while many others come and go, across a wrap of the id space.
    let long_lived = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "stays")).unwrap());
    inflight.insert(long_lived);
    for round in 0..70_000u32 {
        let packet_id = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "m")).unwrap());
        assert_ne!(packet_id, 0);
        assert!(
            inflight.insert(packet_id),
            "round {round}: id {packet_id} is already in flight"
        );
        if inflight.len() > 3 {
            let oldest = *inflight.iter().find(|&&id| id != long_lived).unwrap();
            flows.handle_puback(&PublishAck::new(oldest)).unwrap();
            inflight.remove(&oldest);
        }
    }
    assert!(inflight.contains(&long_lived));
    assert_eq!(flows.state(long_lived), Some(FlowState::AwaitingPubRec));
}

#[test]
fn packet_ids_exhausted_is_reported() {
    let mut flows = OutgoingFlows::new(10);
    let mut subscribe_ids = 0;
    while flows.allocate_packet_id().is_some() {
        subscribe_ids += 1;
    }
    assert_eq!(subscribe_ids, 65535);
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "m")),
        Err(SendError::PacketIdsExhausted)
    );
    assert!(flows.is_empty());
}

#[test]
fn subscribe_ids_share_the_space_with_publish_ids() {
    let mut flows = flows_with_window(10);
    let subscribe = flows.allocate_packet_id().unwrap();
    let publish = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "m")).unwrap());
    assert_ne!(subscribe, publish);
    assert!(!flows.release_packet_id(publish), "a SUBACK cannot free a PUBLISH's id");
    assert!(flows.is_packet_id_in_use(publish));
    assert_eq!(flows.state(publish), Some(FlowState::AwaitingPubAck));
    assert!(flows.release_packet_id(subscribe));
    assert!(!flows.release_packet_id(subscribe));
    assert_eq!(
        flows.handle_puback(&PublishAck::new(subscribe)),
        Err(FlowError::Unsolicited {
            packet_id: subscribe,
            ack: PacketType::PubAck,
            state: None
        })
    );
}

#[test]
fn clear_discards_the_session() {
    let mut flows = flows_with_window(10);
    flows.send(message(QoS::AtLeastOnce, "1")).unwrap();
    flows.send(message(QoS::ExactlyOnce, "2")).unwrap();
    flows.allocate_packet_id().unwrap();
    flows.clear();
    assert!(flows.is_empty());
    assert_eq!(flows.inflight().count(), 0);
    assert!((1..=10).all(|packet_id| !flows.is_packet_id_in_use(packet_id)));
    assert!(flows.resend_on_resume().is_empty());
}

// ---------------------------------------------------------------------------------------------
// OutgoingFlows: resuming a session

#[test]
fn resume_resends_publish_with_dup_and_same_id_then_pubrel() {
    let mut flows = flows_with_window(10);
    let qos1 = flows.send(message(QoS::AtLeastOnce, "1")).unwrap();
    let released = flows.send(message(QoS::ExactlyOnce, "2")).unwrap();
    let qos2 = flows.send(message(QoS::ExactlyOnce, "3")).unwrap();
    let acked = flows.send(message(QoS::AtLeastOnce, "4")).unwrap();
    flows.handle_pubrec(&PublishAck::new(packet_id_of(&released))).unwrap();
    flows.handle_puback(&PublishAck::new(packet_id_of(&acked))).unwrap();

    // The connection drops; a new one resumes the session.
    flows.set_send_quota(10);
    let packets = flows.resend_on_resume();
    assert_eq!(
        packets,
        vec![
            Packet::Publish(Publish { dup: true, ..qos1 }),
            Packet::Publish(Publish { dup: true, ..qos2 }),
            Packet::PubRel(PublishAck::new(packet_id_of(&released))),
        ],
        "PUBLISHes in send order with DUP 1 and their ids, then the PUBREL (its PUBREC came last)"
    );
    assert_eq!(flows.resend_next(), None, "nothing withheld");
    assert_eq!(flows.inflight_count(), 3, "resending changes no state");
}

#[test]
fn resume_resends_pubrels_in_pubrec_order() {
    let mut flows = flows_with_window(10);
    let a = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "a")).unwrap());
    let b = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "b")).unwrap());
    let c = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "c")).unwrap());
    flows.handle_pubrec(&PublishAck::new(c)).unwrap();
    flows.handle_pubrec(&PublishAck::new(a)).unwrap();
    let packets = flows.resend_on_resume();
    let expected: Vec<_> = vec![
        (PacketType::Publish, b),
        (PacketType::PubRel, c),
        (PacketType::PubRel, a),
    ];
    let actual: Vec<_> = packets
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => (PacketType::Publish, packet_id_of(publish)),
            Packet::PubRel(pubrel) => (PacketType::PubRel, pubrel.packet_id),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn resume_with_a_smaller_quota_withholds_publishes_until_acks_free_slots() {
    let mut flows = flows_with_window(5);
    let sent: Vec<Publish> = (0..4)
        .map(|_| flows.send(message(QoS::AtLeastOnce, "m")).unwrap())
        .collect();
    let pubrec_first = packet_id_of(&sent[0]);

    // The new connection's peer allows two.
    flows.set_send_quota(2);
    let packets = flows.resend_on_resume();
    assert_eq!(
        packets,
        vec![
            Packet::Publish(Publish {
                dup: true,
                ..sent[0].clone()
            }),
            Packet::Publish(Publish {
                dup: true,
                ..sent[1].clone()
            }),
        ]
    );
    assert_eq!(flows.resend_pending_count(), 2);
    assert_eq!(flows.resend_next(), None, "the window is full");
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "new")),
        Err(SendError::QuotaExhausted)
    );
    assert!(
        flows.send(message(QoS::AtMostOnce, "new")).is_ok(),
        "QoS 0 is not held back"
    );

    flows.handle_puback(&PublishAck::new(pubrec_first)).unwrap();
    assert_eq!(
        flows.resend_next(),
        Some(Publish {
            dup: true,
            ..sent[2].clone()
        })
    );
    assert_eq!(flows.resend_next(), None);
    flows.handle_puback(&PublishAck::new(packet_id_of(&sent[1]))).unwrap();
    assert_eq!(
        flows.resend_next(),
        Some(Publish {
            dup: true,
            ..sent[3].clone()
        })
    );
    assert_eq!(flows.resend_pending_count(), 0);
    assert_eq!(
        flows.send(message(QoS::AtLeastOnce, "new")),
        Err(SendError::QuotaExhausted)
    );
    flows.handle_puback(&PublishAck::new(packet_id_of(&sent[2]))).unwrap();
    assert!(
        flows.send(message(QoS::AtLeastOnce, "new")).is_ok(),
        "new messages only after the resends"
    );
}

#[test]
fn a_discarded_publish_ends_its_flow_as_if_acknowledged_and_frees_its_slot() {
    let mut flows = flows_with_window(2);
    let first = flows.send(message(QoS::AtLeastOnce, "one")).unwrap();
    let second = flows.send(message(QoS::ExactlyOnce, "two")).unwrap();
    let third = flows.send(message(QoS::ExactlyOnce, "three"));
    assert_eq!(third, Err(SendError::QuotaExhausted));
    let pubrel = flows.handle_pubrec(&PublishAck::new(packet_id_of(&second))).unwrap();
    assert!(pubrel.is_some());

    // A flow waiting for its PUBCOMP is not a PUBLISH any more: nothing to discard.
    let before = snapshot(&flows);
    assert_eq!(flows.discard(packet_id_of(&second)), None);
    assert_eq!(flows.discard(999), None, "no flow uses the id");
    assert_eq!(snapshot(&flows), before);

    assert_eq!(
        flows.discard(packet_id_of(&first)),
        Some(Completed {
            packet_id: packet_id_of(&first),
            qos: QoS::AtLeastOnce,
            reason_code: ReasonCode::SUCCESS,
        })
    );
    assert_eq!(flows.state(packet_id_of(&first)), None);
    assert!(!flows.is_packet_id_in_use(packet_id_of(&first)));
    assert!(
        flows.send(message(QoS::AtLeastOnce, "four")).is_ok(),
        "the slot is free"
    );
    assert_eq!(
        flows
            .handle_puback(&PublishAck::new(packet_id_of(&first)))
            .unwrap_err()
            .reason_code(),
        Some(ReasonCode::PROTOCOL_ERROR),
        "a late PUBACK for it is unsolicited"
    );
}

#[test]
fn a_publish_withheld_at_resume_can_be_discarded_and_is_never_resent() {
    let mut flows = flows_with_window(4);
    let sent: Vec<Publish> = (0..3)
        .map(|_| flows.send(message(QoS::AtLeastOnce, "m")).unwrap())
        .collect();
    flows.set_send_quota(1);
    assert_eq!(flows.resend_on_resume().len(), 1);
    assert_eq!(flows.resend_pending_count(), 2);
    assert!(flows.discard(packet_id_of(&sent[1])).is_some());
    assert_eq!(flows.resend_pending_count(), 1);
    flows.handle_puback(&PublishAck::new(packet_id_of(&sent[0]))).unwrap();
    assert_eq!(
        flows.resend_next(),
        Some(Publish {
            dup: true,
            ..sent[2].clone()
        })
    );
    assert_eq!(flows.resend_next(), None);
}

#[test]
fn pubrels_are_resent_beyond_the_quota() {
    let mut flows = flows_with_window(3);
    let ids: Vec<u16> = (0..3)
        .map(|_| packet_id_of(&flows.send(message(QoS::ExactlyOnce, "m")).unwrap()))
        .collect();
    flows.handle_pubrec(&PublishAck::new(ids[1])).unwrap();
    flows.handle_pubrec(&PublishAck::new(ids[2])).unwrap();
    flows.set_send_quota(1);
    let packets = flows.resend_on_resume();
    let kinds: Vec<PacketType> = packets.iter().map(Packet::packet_type).collect();
    assert_eq!(kinds, vec![PacketType::Publish, PacketType::PubRel, PacketType::PubRel]);
}

#[test]
fn withheld_publish_acknowledged_anyway_is_not_resent() {
    let mut flows = flows_with_window(2);
    let first = packet_id_of(&flows.send(message(QoS::AtLeastOnce, "1")).unwrap());
    let second = packet_id_of(&flows.send(message(QoS::ExactlyOnce, "2")).unwrap());
    flows.set_send_quota(1);
    assert_eq!(flows.resend_on_resume().len(), 1);
    assert_eq!(flows.resend_pending_count(), 1);
    // The peer acknowledges the withheld message (it had received it before the reconnect).
    assert!(flows.handle_pubrec(&PublishAck::new(second)).unwrap().is_some());
    assert_eq!(flows.resend_pending_count(), 0);
    flows.handle_puback(&PublishAck::new(first)).unwrap();
    assert_eq!(flows.resend_next(), None);
}

#[test]
fn a_second_resume_resends_again() {
    let mut flows = flows_with_window(10);
    let publish = flows.send(message(QoS::AtLeastOnce, "1")).unwrap();
    let once = flows.resend_on_resume();
    let twice = flows.resend_on_resume();
    assert_eq!(once, twice);
    assert_eq!(once, vec![Packet::Publish(Publish { dup: true, ..publish })]);
}

#[test]
fn inflight_iterates_in_send_order_with_the_original_publish() {
    let mut flows = flows_with_window(10);
    let sent: Vec<Publish> = ["a", "b", "c"]
        .into_iter()
        .map(|payload| flows.send(message(QoS::AtLeastOnce, payload)).unwrap())
        .collect();
    let seen: Vec<Publish> = flows
        .inflight()
        .map(|message| message.publish.unwrap().clone())
        .collect();
    assert_eq!(seen, sent);
    assert!(flows
        .inflight()
        .all(|message| message.state == FlowState::AwaitingPubAck && !message.resend_pending));
}

#[test]
#[should_panic(expected = "non-zero")]
fn a_zero_send_quota_is_a_programmer_error() {
    OutgoingFlows::new(10).set_send_quota(0);
}

// ---------------------------------------------------------------------------------------------
// IncomingFlows

#[test]
fn qos0_publish_is_delivered_without_reply() {
    let mut flows = IncomingFlows::new(10);
    assert_eq!(
        flows.handle_publish(&message(QoS::AtMostOnce, "a")),
        Ok(Incoming {
            deliver: true,
            reply: None
        })
    );
}

#[test]
fn qos1_publish_is_delivered_and_acknowledged_every_time() {
    let mut flows = IncomingFlows::new(10);
    let publish = Publish {
        packet_id: Some(5),
        ..message(QoS::AtLeastOnce, "a")
    };
    let expected = Incoming {
        deliver: true,
        reply: Some(Packet::PubAck(PublishAck::new(5))),
    };
    assert_eq!(flows.handle_publish(&publish), Ok(expected.clone()));
    // After the PUBACK, the same id is a new message, DUP or not (5.0 MQTT-4.3.2-5).
    assert_eq!(flows.handle_publish(&Publish { dup: true, ..publish }), Ok(expected));
    assert_eq!(flows.held_count(), 0);
}

#[test]
fn qos2_duplicate_publish_is_delivered_once() {
    let mut flows = IncomingFlows::new(10);
    let publish = Publish {
        packet_id: Some(7),
        ..message(QoS::ExactlyOnce, "a")
    };
    let pubrec = Some(Packet::PubRec(PublishAck::new(7)));
    assert_eq!(
        flows.handle_publish(&publish),
        Ok(Incoming {
            deliver: true,
            reply: pubrec.clone()
        })
    );
    assert!(flows.is_held(7));
    let resent = Publish {
        dup: true,
        ..publish.clone()
    };
    assert_eq!(
        flows.handle_publish(&resent),
        Ok(Incoming {
            deliver: false,
            reply: pubrec.clone()
        })
    );
    assert_eq!(
        flows.handle_publish(&publish),
        Ok(Incoming {
            deliver: false,
            reply: pubrec
        })
    );
    assert_eq!(flows.held_count(), 1);
}

#[test]
fn qos2_id_is_new_again_after_pubcomp() {
    let mut flows = IncomingFlows::new(10);
    let publish = Publish {
        packet_id: Some(7),
        ..message(QoS::ExactlyOnce, "a")
    };
    flows.handle_publish(&publish).unwrap();
    assert_eq!(
        flows.handle_pubrel(&PublishAck::new(7), ProtocolVersion::V5),
        PublishAck::new(7)
    );
    assert!(!flows.is_held(7));
    assert!(flows.handle_publish(&publish).unwrap().deliver);
}

#[test]
fn pubrel_for_unknown_id_gets_packet_identifier_not_found_in_v5() {
    let mut flows = IncomingFlows::new(10);
    assert_eq!(
        flows.handle_pubrel(&PublishAck::new(3), ProtocolVersion::V5),
        ack(3, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
}

#[test]
fn pubrel_for_unknown_id_gets_plain_pubcomp_in_v3_1_1() {
    let mut flows = IncomingFlows::new(10);
    assert_eq!(
        flows.handle_pubrel(&PublishAck::new(3), ProtocolVersion::V3_1_1),
        PublishAck::new(3)
    );
    assert_eq!(
        flows.handle_pubrel(&PublishAck::new(3), ProtocolVersion::V3_1),
        PublishAck::new(3)
    );
}

#[test]
fn receive_maximum_exceeded_is_an_error_and_changes_nothing() {
    let mut flows = IncomingFlows::new(2);
    for packet_id in [1, 2] {
        flows
            .handle_publish(&Publish {
                packet_id: Some(packet_id),
                ..message(QoS::ExactlyOnce, "a")
            })
            .unwrap();
    }
    let error = flows
        .handle_publish(&Publish {
            packet_id: Some(3),
            ..message(QoS::ExactlyOnce, "a")
        })
        .unwrap_err();
    assert_eq!(
        error,
        FlowError::ReceiveMaximumExceeded {
            packet_id: 3,
            receive_maximum: 2
        }
    );
    assert_eq!(error.reason_code(), Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
    assert_eq!(flows.held().collect::<Vec<_>>(), vec![1, 2]);

    // A resend of a held id is still acknowledged, and QoS 0 and 1 are not counted.
    let resent = flows.handle_publish(&Publish {
        dup: true,
        packet_id: Some(2),
        ..message(QoS::ExactlyOnce, "a")
    });
    assert_eq!(resent.map(|incoming| incoming.deliver), Ok(false));
    assert!(flows
        .handle_publish(&Publish {
            packet_id: Some(3),
            ..message(QoS::AtLeastOnce, "a")
        })
        .is_ok());
    assert!(flows.handle_publish(&message(QoS::AtMostOnce, "a")).is_ok());

    flows.handle_pubrel(&PublishAck::new(1), ProtocolVersion::V5);
    assert!(flows
        .handle_publish(&Publish {
            packet_id: Some(3),
            ..message(QoS::ExactlyOnce, "a")
        })
        .is_ok());
}

#[test]
fn publish_without_a_valid_packet_id_is_an_error() {
    let mut flows = IncomingFlows::new(10);
    for (qos, packet_id) in [
        (QoS::AtLeastOnce, None),
        (QoS::ExactlyOnce, None),
        (QoS::ExactlyOnce, Some(0)),
    ] {
        let error = flows
            .handle_publish(&Publish {
                packet_id,
                ..message(qos, "a")
            })
            .unwrap_err();
        assert_eq!(error, FlowError::InvalidPacketId { qos, packet_id });
        assert_eq!(error.reason_code(), Some(ReasonCode::MALFORMED_PACKET));
    }
    assert_eq!(flows.held_count(), 0);
}

#[test]
fn acknowledge_with_an_error_releases_the_qos2_id() {
    let mut flows = IncomingFlows::new(10);
    let publish = Publish {
        packet_id: Some(4),
        ..message(QoS::ExactlyOnce, "a")
    };
    assert!(flows.handle_publish(&publish).unwrap().deliver);
    assert_eq!(
        flows.acknowledge_with(&publish, ReasonCode::NOT_AUTHORIZED),
        Some(Packet::PubRec(ack(4, ReasonCode::NOT_AUTHORIZED)))
    );
    assert!(!flows.is_held(4));
    assert!(
        flows.handle_publish(&publish).unwrap().deliver,
        "5.0 MQTT-4.3.3-9: the next one is new"
    );
}

#[test]
fn acknowledge_with_no_matching_subscribers_keeps_the_qos2_id() {
    let mut flows = IncomingFlows::new(10);
    let publish = Publish {
        packet_id: Some(4),
        ..message(QoS::ExactlyOnce, "a")
    };
    flows.handle_publish(&publish).unwrap();
    assert_eq!(
        flows.acknowledge_with(&publish, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        Some(Packet::PubRec(ack(4, ReasonCode::NO_MATCHING_SUBSCRIBERS)))
    );
    assert!(flows.is_held(4));
    let qos1 = Publish {
        packet_id: Some(5),
        ..message(QoS::AtLeastOnce, "a")
    };
    assert_eq!(
        flows.acknowledge_with(&qos1, ReasonCode::NOT_AUTHORIZED),
        Some(Packet::PubAck(ack(5, ReasonCode::NOT_AUTHORIZED)))
    );
    assert_eq!(
        flows.acknowledge_with(&message(QoS::AtMostOnce, "a"), ReasonCode::NOT_AUTHORIZED),
        None
    );
}

#[test]
fn incoming_clear_forgets_held_ids() {
    let mut flows = IncomingFlows::new(10);
    flows
        .handle_publish(&Publish {
            packet_id: Some(1),
            ..message(QoS::ExactlyOnce, "a")
        })
        .unwrap();
    flows.clear();
    assert_eq!(flows.held_count(), 0);
    assert!(!flows.is_held(1));
}

// ---------------------------------------------------------------------------------------------
// Both sides together

#[test]
fn exactly_once_across_a_reconnect_when_the_pubrec_is_lost() {
    let mut sender = flows_with_window(10);
    let mut receiver = IncomingFlows::new(10);
    let mut delivered = 0;

    let publish = sender.send(message(QoS::ExactlyOnce, "once")).unwrap();
    let incoming = receiver.handle_publish(&publish).unwrap();
    delivered += usize::from(incoming.deliver);
    // The PUBREC is lost with the connection. The session resumes on a new one.
    sender.set_send_quota(10);
    let mut pubrel = None;
    for packet in sender.resend_on_resume() {
        let Packet::Publish(resent) = packet else {
            panic!("only the PUBLISH is unacknowledged")
        };
        assert!(resent.dup);
        let incoming = receiver.handle_publish(&resent).unwrap();
        delivered += usize::from(incoming.deliver);
        let Some(Packet::PubRec(pubrec)) = incoming.reply else {
            panic!("a PUBREC")
        };
        pubrel = sender.handle_pubrec(&pubrec).unwrap();
    }
    // The PUBCOMP is lost too; another resume resends the PUBREL only.
    let pubrel = pubrel.expect("a PUBREL");
    receiver.handle_pubrel(&pubrel, ProtocolVersion::V5);
    assert_eq!(sender.resend_on_resume(), vec![Packet::PubRel(pubrel.clone())]);
    let pubcomp = receiver.handle_pubrel(&pubrel, ProtocolVersion::V5);
    assert_eq!(
        pubcomp.reason_code,
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        "normal during recovery"
    );
    sender.handle_pubcomp(&pubcomp).unwrap();

    assert_eq!(delivered, 1);
    assert!(sender.is_empty());
    assert_eq!(receiver.held_count(), 0);
}

#[test]
fn errors_say_what_happened() {
    let cases = [
        (
            FlowError::Unsolicited {
                packet_id: 3,
                ack: PacketType::PubAck,
                state: None,
            },
            "unsolicited PUBACK for packet id 3: no flow uses it",
        ),
        (
            FlowError::Unsolicited {
                packet_id: 3,
                ack: PacketType::PubComp,
                state: Some(FlowState::AwaitingPubRec),
            },
            "unsolicited PUBCOMP for packet id 3: its flow is awaiting PUBREC",
        ),
        (
            FlowError::InvalidPacketId {
                qos: QoS::AtLeastOnce,
                packet_id: None,
            },
            "QoS 1 PUBLISH without a packet id",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    let exceeded = FlowError::ReceiveMaximumExceeded {
        packet_id: 1,
        receive_maximum: 2,
    };
    assert!(exceeded.to_string().contains("Receive Maximum exceeded"));
    assert!(SendError::QuotaExhausted.to_string().contains("quota"));
    let _: &dyn std::error::Error = &SendError::PacketIdsExhausted;
}

// ---------------------------------------------------------------------------------------------
// Random sequences of sends and acks

#[derive(Debug, Clone)]
enum Operation {
    Send(QoS),
    PubAck { packet_id: u16, error: bool },
    PubRec { packet_id: u16, error: bool },
    PubComp { packet_id: u16 },
    Resume { send_quota: u16 },
    ResendNext,
}

fn operation() -> impl Strategy<Value = Operation> {
    // Ids 0..=12 mix the ids in flight with unknown ones and 0.
    let packet_id = 0u16..=12;
    prop_oneof![
        3 => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)].prop_map(Operation::Send),
        2 => (packet_id.clone(), any::<bool>()).prop_map(|(packet_id, error)| Operation::PubAck { packet_id, error }),
        2 => (packet_id.clone(), any::<bool>()).prop_map(|(packet_id, error)| Operation::PubRec { packet_id, error }),
        2 => packet_id.prop_map(|packet_id| Operation::PubComp { packet_id }),
        1 => (1u16..=6).prop_map(|send_quota| Operation::Resume { send_quota }),
        1 => Just(Operation::ResendNext),
    ]
}

fn error_code(error: bool) -> ReasonCode {
    if error {
        ReasonCode::UNSPECIFIED_ERROR
    } else {
        ReasonCode::SUCCESS
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_sends_and_acks_keep_the_outgoing_invariants(
        inflight_count_max in 1u16..=8,
        send_quota in 1u16..=6,
        operations in proptest::collection::vec(operation(), 0..80),
    ) {
        let mut flows = OutgoingFlows::new(inflight_count_max);
        flows.set_send_quota(send_quota);
        // What the flows should hold: packet id → state.
        let mut model: BTreeMap<u16, FlowState> = BTreeMap::new();

        for operation in operations {
            let before = snapshot(&flows);
            let expected = |packet_id: u16| model.get(&packet_id).copied();
            match operation {
                Operation::Send(qos) => match flows.send(message(qos, "m")) {
                    Ok(publish) => {
                        prop_assert!(!publish.dup);
                        if qos == QoS::AtMostOnce {
                            prop_assert_eq!(publish.packet_id, None);
                            prop_assert_eq!(snapshot(&flows), before);
                        } else {
                            let packet_id = packet_id_of(&publish);
                            prop_assert_ne!(packet_id, 0);
                            prop_assert!(!model.contains_key(&packet_id), "id {} reused while in flight", packet_id);
                            let state = if qos == QoS::AtLeastOnce { FlowState::AwaitingPubAck } else { FlowState::AwaitingPubRec };
                            model.insert(packet_id, state);
                            prop_assert!(flows.inflight_count() <= flows.window());
                        }
                    }
                    Err(SendError::QuotaExhausted) => {
                        prop_assert!(model.len() >= flows.window() || flows.resend_pending_count() > 0);
                        prop_assert_eq!(snapshot(&flows), before);
                    }
                    Err(SendError::PacketIdsExhausted) => prop_assert!(false, "at most 8 ids are ever in use"),
                },
                Operation::PubAck { packet_id, error } => {
                    let result = flows.handle_puback(&ack(packet_id, error_code(error)));
                    if expected(packet_id) == Some(FlowState::AwaitingPubAck) {
                        let completed = result.expect("a PUBACK for a QoS 1 flow is expected");
                        prop_assert_eq!(completed.packet_id, packet_id);
                        prop_assert_eq!(completed.is_error(), error);
                        model.remove(&packet_id);
                        prop_assert!(!flows.is_packet_id_in_use(packet_id), "completed id {} still in use", packet_id);
                    } else {
                        let is_unsolicited = matches!(result, Err(FlowError::Unsolicited { .. }));
                        prop_assert!(is_unsolicited);
                        prop_assert_eq!(snapshot(&flows), before);
                    }
                }
                Operation::PubRec { packet_id, error } => {
                    let result = flows.handle_pubrec(&ack(packet_id, error_code(error)));
                    if expected(packet_id) == Some(FlowState::AwaitingPubRec) {
                        let pubrel = result.expect("a PUBREC for a QoS 2 flow awaiting it is expected");
                        if error {
                            prop_assert_eq!(pubrel, None);
                            model.remove(&packet_id);
                            prop_assert!(!flows.is_packet_id_in_use(packet_id));
                        } else {
                            prop_assert_eq!(pubrel, Some(PublishAck::new(packet_id)));
                            model.insert(packet_id, FlowState::AwaitingPubComp);
                        }
                    } else {
                        let is_unsolicited = matches!(result, Err(FlowError::Unsolicited { .. }));
                        prop_assert!(is_unsolicited);
                        prop_assert_eq!(snapshot(&flows), before);
                    }
                }
                Operation::PubComp { packet_id } => {
                    let result = flows.handle_pubcomp(&PublishAck::new(packet_id));
                    if expected(packet_id) == Some(FlowState::AwaitingPubComp) {
                        prop_assert_eq!(result.map(|completed| completed.packet_id), Ok(packet_id));
                        model.remove(&packet_id);
                        prop_assert!(!flows.is_packet_id_in_use(packet_id));
                    } else {
                        let is_unsolicited = matches!(result, Err(FlowError::Unsolicited { .. }));
                        prop_assert!(is_unsolicited);
                        prop_assert_eq!(snapshot(&flows), before);
                    }
                }
                Operation::Resume { send_quota } => {
                    flows.set_send_quota(send_quota);
                    let packets = flows.resend_on_resume();
                    let mut publishes = 0;
                    let mut resent = BTreeSet::new();
                    for packet in &packets {
                        let (packet_id, state) = match packet {
                            Packet::Publish(publish) => {
                                prop_assert!(publish.dup);
                                publishes += 1;
                                prop_assert!(publishes <= flows.window(), "a PUBLISH resent beyond the window");
                                (packet_id_of(publish), expected(packet_id_of(publish)).filter(|state| *state != FlowState::AwaitingPubComp))
                            }
                            Packet::PubRel(pubrel) => (pubrel.packet_id, expected(pubrel.packet_id).filter(|state| *state == FlowState::AwaitingPubComp)),
                            other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
                        };
                        prop_assert!(state.is_some(), "resent {} which is not in flight in its state", packet_id);
                        prop_assert!(resent.insert(packet_id), "resent {} twice", packet_id);
                    }
                    prop_assert_eq!(resent.len() + flows.resend_pending_count(), model.len(), "every flow resent or withheld");
                }
                Operation::ResendNext => {
                    if let Some(publish) = flows.resend_next() {
                        prop_assert!(publish.dup);
                        prop_assert!(model.contains_key(&packet_id_of(&publish)));
                        prop_assert!(flows.inflight_count() - flows.resend_pending_count() <= flows.window());
                    }
                }
            }

            // Invariants after every operation.
            let inflight: Vec<(u16, FlowState)> = flows.inflight().map(|message| (message.packet_id, message.state)).collect();
            let ids: BTreeSet<u16> = inflight.iter().map(|(packet_id, _)| *packet_id).collect();
            prop_assert_eq!(ids.len(), inflight.len(), "packet ids in flight are unique");
            prop_assert!(!ids.contains(&0));
            prop_assert!(ids.iter().all(|&packet_id| flows.is_packet_id_in_use(packet_id)));
            prop_assert_eq!(inflight.into_iter().collect::<BTreeMap<_, _>>(), model.clone());
            prop_assert!(flows.inflight_count() <= usize::from(inflight_count_max));
            prop_assert!(flows.resend_pending_count() <= flows.inflight_count());
        }
    }
}
