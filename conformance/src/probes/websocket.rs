//! Probe cases of §6 (MQTT over WebSocket), for a broker checked at a `ws://` or `wss://` URL (not
//! applicable at any other): the subprotocol it selects, packets split across and joined within
//! frames, and a text frame. They speak WebSocket frames themselves (tungstenite's handshake and
//! framing), not through the byte stream the other cases use, since the frames are what they test.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mqtt_client::options::Scheme;
use mqtt_client::probe::trace::summary;
use mqtt_client::transport::{dialer_over, BoxedStream, TcpDialer};
use mqtt_client::BrokerUrl;
use mqtt_protocol::{
    decode, encode, DecodeContext, Packet, Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use mqtt_scenarios::scenario::{CaseLevel, Phase};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::connack::still_serving;
use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "websocket-subprotocol-mqtt-selected",
        about: "A WebSocket handshake offering the subprotocol `mqtt` is answered with \
                Sec-WebSocket-Protocol: mqtt.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-6.0.0-4"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(subprotocol_mqtt_selected(context)),
    },
    ProbeCase {
        name: "websocket-packets-across-frame-boundaries",
        about: "A CONNECT split over two binary frames is answered, and a SUBSCRIBE, a PUBLISH and a \
                PINGREQ in one binary frame are answered in order (SUBACK, the PUBLISH, PINGRESP); \
                every frame the broker sends is binary.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-6.0.0-2", "MQTT-6.0.0-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(packets_across_frame_boundaries(context)),
    },
    ProbeCase {
        name: "websocket-text-frame-closes",
        about: "A text frame after the CONNACK is not MQTT: the broker closes the connection rather \
                than answer it, and goes on serving others.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-6.0.0-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(text_frame_closes(context)),
    },
];

type Socket = WebSocketStream<BoxedStream>;

/// Sends `bytes` as one binary frame.
async fn send(socket: &mut Socket, bytes: Vec<u8>) -> Result<(), Failure> {
    socket
        .send(Message::Binary(Bytes::from(bytes)))
        .await
        .map_err(|error| Failure::new(format!("cannot send a frame: {error}")))
}

/// The WebSocket handshake with the broker offering `mqtt`, and the subprotocol it selected; or
/// why the case does not apply.
async fn handshake(context: &Context) -> Result<Result<(Socket, Option<String>), Finding>, Failure> {
    let url = &context.broker.url;
    let under = match url.scheme {
        Scheme::Ws => Scheme::Mqtt,
        Scheme::Wss => Scheme::Mqtts,
        Scheme::Mqtt | Scheme::Mqtts => {
            return Ok(Err(Finding::NotApplicable(format!(
                "the broker is checked at {url}, not over WebSocket (check ws://... or wss://...)"
            ))))
        }
    };
    // The TCP or TLS connection under the WebSocket, to the address that answered.
    let transport = BrokerUrl {
        scheme: under,
        ..url.clone()
    };
    let dialer = dialer_over(
        TcpDialer::from_socket_address(context.broker.address),
        &transport,
        &context.broker.tls,
    )
    .map_err(|error| Failure::new(format!("TLS setup: {error}")))?;
    let stream = timeout(context.wait(), dialer.dial())
        .await
        .map_err(|_| Failure::new(format!("no connection to {url} within {:?}", context.wait())))?
        .map_err(|error| Failure::new(format!("cannot connect to {url}: {error}")))?;
    let address = format!("{}://{}{}", url.scheme.name(), url.authority(), url.path);
    let mut request = address
        .as_str()
        .into_client_request()
        .map_err(|error| Failure::new(format!("{address}: {error}")))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (socket, response) = timeout(context.wait(), tokio_tungstenite::client_async(request, stream))
        .await
        .map_err(|_| {
            Failure::new(format!(
                "no WebSocket handshake with {address} within {:?}",
                context.wait()
            ))
        })?
        .map_err(|error| Failure::new(format!("the WebSocket handshake with {address} failed: {error}")))?;
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok(Ok((socket, selected)))
}

async fn subprotocol_mqtt_selected(context: Context) -> Result<Finding, Failure> {
    let (mut socket, selected) = match handshake(&context).await? {
        Ok(opened) => opened,
        Err(finding) => return Ok(finding),
    };
    let _ = socket.close(None).await;
    if selected.as_deref().is_some_and(|protocol| protocol.trim() == "mqtt") {
        Ok(Finding::Pass)
    } else {
        Err(Failure::expected(
            "the broker did not select the subprotocol mqtt in its WebSocket handshake",
            "Sec-WebSocket-Protocol: mqtt",
            format!("{selected:?}"),
        ))
    }
}

fn encoded(context: &Context, packets: &[Packet]) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    for packet in packets {
        encode(packet, context.version, &mut bytes).map_err(|error| Failure::new(format!("cannot encode: {error}")))?;
    }
    Ok(bytes)
}

/// The next `count` packets from the broker, each frame checked to be binary; the close or a
/// text frame is a failure.
async fn read_packets(
    context: &Context,
    socket: &mut Socket,
    count: usize,
    what: &str,
) -> Result<Vec<Packet>, Failure> {
    let decode_context = DecodeContext::client(context.version);
    let mut buffer = bytes::BytesMut::new();
    let mut packets = Vec::new();
    let deadline = tokio::time::Instant::now() + context.wait();
    while packets.len() < count {
        while let Some(packet) = decode(&mut buffer, &decode_context)
            .map_err(|error| Failure::new(format!("{what}: the broker sent a malformed packet: {error}")))?
        {
            packets.push(packet);
        }
        if packets.len() >= count {
            break;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timeout(left, socket.next()).await {
            Err(_) => {
                return Err(Failure::expected(
                    format!("{what}: the broker did not answer within {:?}", context.wait()),
                    format!("{count} packets"),
                    format!(
                        "{}: {}",
                        packets.len(),
                        packets.iter().map(summary).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
            Ok(Some(Ok(Message::Binary(data)))) => buffer.extend_from_slice(&data),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Text(text)))) => {
                return Err(Failure::expected(
                    format!("{what}: the broker sent a text frame (MQTT-6.0.0-1: binary frames only)"),
                    "binary frames",
                    format!("a text frame of {} bytes", text.len()),
                ))
            }
            Ok(other) => {
                return Err(Failure::expected(
                    format!("{what}: the connection ended"),
                    format!("{count} packets"),
                    format!("{other:?} after {} packets", packets.len()),
                ))
            }
        }
    }
    Ok(packets)
}

async fn packets_across_frame_boundaries(context: Context) -> Result<Finding, Failure> {
    let (mut socket, _) = match handshake(&context).await? {
        Ok(opened) => opened,
        Err(finding) => return Ok(finding),
    };
    let connect = encoded(
        &context,
        &[Packet::Connect(Box::new(context.connect_packet("ws-frames")))],
    )?;
    let (head, tail) = connect.split_at(connect.len() / 2);
    send(&mut socket, head.to_vec()).await?;
    send(&mut socket, tail.to_vec()).await?;
    let answer = read_packets(&context, &mut socket, 1, "a CONNECT split over two frames").await?;
    if !matches!(&answer[..], [Packet::ConnAck(connack)] if connack.reason_code == ReasonCode::SUCCESS) {
        return Err(Failure::expected(
            "a CONNECT split over two frames was not accepted",
            "CONNACK 0x00",
            summary(&answer[0]),
        ));
    }
    let topic = context.topic("ws/frames");
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: topic.clone(),
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        }],
    });
    let publish = Packet::Publish(Publish {
        topic: topic.as_str().into(),
        payload: Bytes::from_static(b"joined"),
        ..Publish::default()
    });
    // The PUBLISH goes after the SUBSCRIBE in the same frame: the broker handles them in order.
    send(&mut socket, encoded(&context, &[subscribe, publish, Packet::PingReq])?).await?;
    let answers = read_packets(&context, &mut socket, 3, "SUBSCRIBE, PUBLISH and PINGREQ in one frame").await?;
    let in_order = matches!(
        &answers[..],
        [Packet::SubAck(suback), Packet::Publish(publish), Packet::PingResp]
            if suback.packet_id == 1 && publish.payload.as_ref() == b"joined"
    );
    let _ = socket.close(None).await;
    if in_order {
        Ok(Finding::Pass)
    } else {
        Err(Failure::expected(
            "three packets in one frame were not all answered in order",
            "SUBACK, the PUBLISH, PINGRESP",
            answers.iter().map(summary).collect::<Vec<_>>().join(", "),
        ))
    }
}

async fn text_frame_closes(context: Context) -> Result<Finding, Failure> {
    let (mut socket, _) = match handshake(&context).await? {
        Ok(opened) => opened,
        Err(finding) => return Ok(finding),
    };
    let connect = encoded(
        &context,
        &[Packet::Connect(Box::new(context.connect_packet("ws-text")))],
    )?;
    send(&mut socket, connect).await?;
    read_packets(&context, &mut socket, 1, "a CONNECT in a binary frame").await?;
    // Text frames hold UTF-8, so no MQTT packet can travel in one: any text is the test.
    socket
        .send(Message::Text("PINGREQ".into()))
        .await
        .map_err(|error| Failure::new(format!("cannot send a frame: {error}")))?;
    let what = "a text frame";
    let deadline = tokio::time::Instant::now() + context.wait();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timeout(left, socket.next()).await {
            Err(_) => {
                return Err(Failure::expected(
                    format!("{what}: the broker kept the connection open"),
                    format!("the close within {:?}", context.wait()),
                    "the connection stayed open",
                ))
            }
            Ok(Some(Ok(Message::Binary(data)))) => {
                let mut buffer = bytes::BytesMut::from(&data[..]);
                let answer = decode(&mut buffer, &DecodeContext::client(context.version))
                    .ok()
                    .flatten();
                match answer {
                    // A DISCONNECT saying why is the way a 5.0 broker closes.
                    Some(Packet::Disconnect(disconnect)) if disconnect.reason_code.0 >= 0x80 => {}
                    other => {
                        return Err(Failure::expected(
                            format!("{what}: the broker answered it"),
                            "the close",
                            other.as_ref().map_or_else(|| format!("{} bytes", data.len()), summary),
                        ))
                    }
                }
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            // A close frame, the end of the stream, or a broken connection: closed.
            Ok(_) => break,
        }
    }
    still_serving(&context).await?;
    Ok(Finding::Pass)
}
