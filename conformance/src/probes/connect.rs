//! Probe cases of §3.1 (CONNECT): the CONNECTs a broker must refuse and close (malformed ones
//! sent as raw bytes, field by field), what it may or must answer while refusing, and what it does
//! with the CONNECT's fields where a YAML scenario cannot say it (assigned client ids, the order of
//! the will's User Properties, Topic Alias and Request Problem Information limits, a Server Keep
//! Alive it chose).
//!
//! A refusal is judged the same way everywhere ([`refused_and_closed`]): the connection must close;
//! in 5.0 a CONNACK with a code of 0x80 or more may come first (§3.1.4, §4.13.1) and is reported;
//! in 3.1.1 a CONNECT that does not conform gets no CONNACK at all (MQTT-3.1.4-1). Afterwards
//! another client connects and gets a PINGRESP, so the broker is shown to go on serving.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::trace::summary;
use mqtt_client::probe::{Incoming, Pattern, Probe, ProbeError, ProbeOptions};
use mqtt_protocol::{
    encode, Disconnect, Packet, Properties, PropertyFields, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionOptions, Unsubscribe, Will,
};
use mqtt_scenarios::scenario::{Capability, CaseLevel, Phase};

use crate::catalog::{ProbeCase, ProbeFn};
use crate::context::{Context, Failure, Finding};

/// A MUST case of both versions, concurrent, needing nothing: the common shape here.
const fn case(name: &'static str, about: &'static str, statements: &'static [&'static str], run: ProbeFn) -> ProbeCase {
    ProbeCase {
        name,
        about,
        versions: &["5.0", "3.1.1"],
        statements,
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run,
    }
}

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    case(
        "connack-is-the-first-packet",
        "The first packet the broker sends on a connection is the CONNACK.",
        &["MQTT-3.2.0-1"],
        |context| Box::pin(connack_is_the_first_packet(context)),
    ),
    case(
        "connect-first-packet-not-connect",
        "A connection whose first packet is a PINGREQ instead of a CONNECT is closed without a \
         PINGRESP, and the broker goes on serving other clients.",
        &["MQTT-3.1.0-1"],
        |context| Box::pin(first_packet_not_connect(context)),
    ),
    case(
        "connect-second-connect-closes",
        "A second CONNECT on a connection already accepted is a protocol error: the broker closes \
         the connection (a 5.0 DISCONNECT before it is reported, with its code) and sends no second \
         CONNACK.",
        &["MQTT-3.1.0-2"],
        |context| Box::pin(second_connect_closes(context)),
    ),
    case(
        "connect-protocol-name-not-mqtt",
        "A CONNECT whose protocol name is \"MQTX\" is not accepted: 5.0 closes the connection, \
         perhaps after CONNACK 0x84; 3.1.1 may close or follow another protocol, but never answers \
         it as MQTT 3.1.1 with a CONNACK.",
        &["MQTT-3.1.2-1"],
        |context| Box::pin(protocol_name_not_mqtt(context)),
    ),
    case(
        "connect-protocol-version-unsupported",
        "A CONNECT with a protocol level the broker does not speak (6 in the 5.0 run, 2 in the 3.1.1 \
         run) is refused: 5.0 may answer CONNACK 0x84 and must close; 3.1.1 must answer CONNACK \
         return code 0x01 and close.",
        &["MQTT-3.1.2-2"],
        |context| Box::pin(protocol_version_unsupported(context)),
    ),
    case(
        "connect-reserved-flag-closes",
        "A CONNECT with the reserved bit of the Connect Flags set is malformed: the broker closes \
         the connection without accepting it.",
        &["MQTT-3.1.2-3", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ReservedFlag)),
    ),
    case(
        "connect-will-qos-3-closes",
        "A CONNECT with the Will Flag set and Will QoS 3 is malformed: the broker closes the \
         connection without accepting it.",
        &["5.0:MQTT-3.1.2-12", "3.1.1:MQTT-3.1.2-14", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::WillQos3)),
    ),
    case(
        "connect-will-qos-without-will-flag",
        "A CONNECT with the Will Flag clear but Will QoS 1 breaks the client's rule: the broker \
         closes the connection without accepting it.",
        &[
            "5.0:MQTT-3.1.2-11",
            "3.1.1:MQTT-3.1.2-13",
            "3.1.1:MQTT-3.1.2-11",
            "MQTT-3.1.4-1",
        ],
        |context| Box::pin(malformed_connect(context, Malformed::WillQosWithoutWill)),
    ),
    case(
        "connect-will-retain-without-will-flag",
        "A CONNECT with the Will Flag clear but Will Retain set breaks the client's rule: the broker \
         closes the connection without accepting it.",
        &[
            "5.0:MQTT-3.1.2-13",
            "3.1.1:MQTT-3.1.2-15",
            "3.1.1:MQTT-3.1.2-11",
            "MQTT-3.1.4-1",
        ],
        |context| Box::pin(malformed_connect(context, Malformed::WillRetainWithoutWill)),
    ),
    case(
        "connect-will-fields-missing",
        "A CONNECT with the Will Flag set whose payload ends after the client id (no will \
         properties, topic or payload) is malformed: the broker closes the connection.",
        &["MQTT-3.1.2-9", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::WillFieldsMissing)),
    ),
    case(
        "connect-will-fields-without-will-flag",
        "A CONNECT with the Will Flag clear whose payload still carries a will topic and payload is \
         malformed: the broker closes the connection.",
        &["3.1.1:MQTT-3.1.2-11", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::WillFieldsWithoutWill)),
    ),
    case(
        "connect-user-name-missing",
        "A CONNECT with the User Name Flag set whose payload holds no user name is malformed: the \
         broker closes the connection.",
        &["5.0:MQTT-3.1.2-17", "3.1.1:MQTT-3.1.2-19", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::UserNameMissing)),
    ),
    case(
        "connect-user-name-without-flag",
        "A CONNECT with the User Name Flag clear whose payload still holds a user name is malformed: \
         the broker closes the connection.",
        &["5.0:MQTT-3.1.2-16", "3.1.1:MQTT-3.1.2-18", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::UserNameWithoutFlag)),
    ),
    case(
        "connect-password-missing",
        "A CONNECT with the Password Flag set whose payload holds no password is malformed: the \
         broker closes the connection.",
        &["5.0:MQTT-3.1.2-19", "3.1.1:MQTT-3.1.2-21", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::PasswordMissing)),
    ),
    case(
        "connect-password-without-flag",
        "A CONNECT with the Password Flag clear whose payload still holds a password is malformed: \
         the broker closes the connection.",
        &["5.0:MQTT-3.1.2-18", "3.1.1:MQTT-3.1.2-20", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::PasswordWithoutFlag)),
    ),
    ProbeCase {
        versions: &["3.1.1"],
        ..case(
            "connect-password-without-user-name",
            "In 3.1.1 a CONNECT with the Password Flag set and the User Name Flag clear breaks the \
             client's rule: the broker closes the connection without accepting it.",
            &["3.1.1:MQTT-3.1.2-22", "3.1.1:MQTT-3.1.4-1"],
            |context| Box::pin(malformed_connect(context, Malformed::PasswordWithoutUserName)),
        )
    },
    case(
        "connect-client-id-missing",
        "A CONNECT whose payload is empty, without even the client id, is malformed: the broker \
         closes the connection.",
        &["MQTT-3.1.3-3", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ClientIdMissing)),
    ),
    case(
        "connect-client-id-ill-formed-utf8",
        "A client id that is not well-formed UTF-8 (a 0xFF byte) makes the CONNECT malformed: the \
         broker refuses the id and closes the connection.",
        &["MQTT-3.1.3-4", "5.0:MQTT-3.1.3-8", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ClientIdIllFormed)),
    ),
    case(
        "connect-client-id-null-character",
        "A client id holding the character U+0000 makes the CONNECT malformed: the broker refuses \
         the id and closes the connection.",
        &["MQTT-3.1.3-4", "5.0:MQTT-3.1.3-8", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ClientIdNull)),
    ),
    case(
        "connect-client-id-overruns-packet",
        "A client id whose length prefix runs past the end of the packet makes the CONNECT \
         malformed: the broker closes the connection.",
        &["MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ClientIdOverrun)),
    ),
    case(
        "connect-will-topic-ill-formed-utf8",
        "A will topic that is not well-formed UTF-8 (an overlong encoding) makes the CONNECT \
         malformed: the broker closes the connection.",
        &["5.0:MQTT-3.1.3-11", "3.1.1:MQTT-3.1.3-10", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::WillTopicIllFormed)),
    ),
    case(
        "connect-user-name-ill-formed-utf8",
        "A user name holding an encoded surrogate (U+D800) is not well-formed UTF-8, which makes \
         the CONNECT malformed: the broker closes the connection.",
        &["5.0:MQTT-3.1.3-12", "3.1.1:MQTT-3.1.3-11", "MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::UserNameIllFormed)),
    ),
    v5(case(
        "connect-receive-maximum-zero",
        "A 5.0 CONNECT with Receive Maximum 0 is a protocol error: the broker closes the connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::ReceiveMaximumZero)),
    )),
    v5(case(
        "connect-maximum-packet-size-zero",
        "A 5.0 CONNECT with Maximum Packet Size 0 is a protocol error: the broker closes the \
         connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::MaximumPacketSizeZero)),
    )),
    v5(case(
        "connect-property-repeated",
        "A 5.0 CONNECT carrying Session Expiry Interval twice is a protocol error: the broker closes \
         the connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::PropertyRepeated)),
    )),
    v5(case(
        "connect-property-not-for-connect",
        "A 5.0 CONNECT carrying a Topic Alias, a property CONNECT may not have, is malformed: the \
         broker closes the connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::PropertyNotForConnect)),
    )),
    v5(case(
        "connect-request-problem-information-invalid",
        "A 5.0 CONNECT with Request Problem Information 2 (only 0 and 1 exist) is a protocol error: \
         the broker closes the connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::RequestProblemInformationTwo)),
    )),
    v5(case(
        "connect-authentication-data-without-method",
        "A 5.0 CONNECT with Authentication Data but no Authentication Method is a protocol error: \
         the broker closes the connection.",
        &["5.0:MQTT-3.1.4-1"],
        |context| Box::pin(malformed_connect(context, Malformed::AuthenticationDataWithoutMethod)),
    )),
    case(
        "connect-refused-ignores-later-packets",
        "A client may send packets right after its CONNECT; when the broker refuses the CONNECT (5.0: \
         an authentication method it does not support; 3.1.1: an empty client id with Clean Session \
         0) it closes the connection and does not act on them: a PUBLISH sent in the same write \
         reaches no subscriber.",
        &["5.0:MQTT-3.1.4-6", "5.0:MQTT-3.1.4-2", "3.1.1:MQTT-3.1.4-5"],
        |context| Box::pin(refused_ignores_later_packets(context)),
    ),
    case(
        "connect-empty-client-id",
        "A broker may accept an empty client id with Clean Start 1 (Clean Session 1): it then gives \
         each such client an id of its own, so two of them are both connected, and in 5.0 it returns \
         that id as Assigned Client Identifier and treats the client as having sent it (reconnecting \
         with it resumes the session). Refusing empty ids (5.0 CONNACK 0x85, 3.1.1 0x02, then the \
         close) is allowed and reported.",
        &["MQTT-3.1.3-6", "5.0:MQTT-3.1.3-7"],
        |context| Box::pin(empty_client_id(context)),
    ),
    ProbeCase {
        versions: &["3.1.1"],
        ..case(
            "connect-empty-client-id-session-0",
            "In 3.1.1 an empty client id with Clean Session 0 is refused with CONNACK return code \
             0x02 (Identifier rejected), and the connection is closed.",
            &["3.1.1:MQTT-3.1.3-8", "3.1.1:MQTT-3.1.3-9", "3.1.1:MQTT-3.1.3-7"],
            |context| Box::pin(empty_client_id_session_0(context)),
        )
    },
    case(
        "connect-client-id-23-alphanumeric",
        "A client id of 23 bytes of ASCII letters and digits is accepted with CONNACK 0x00, and the \
         connection works.",
        &["MQTT-3.1.3-5", "5.0:MQTT-3.1.4-5", "3.1.1:MQTT-3.1.4-4"],
        |context| Box::pin(client_id_23_alphanumeric(context)),
    ),
    ProbeCase {
        needs: &[Capability::Qos1],
        ..case(
            "connect-payload-fields-in-order",
            "A CONNECT whose payload carries every field, in the order the spec gives (client id, will \
         properties, will topic, will payload, user name, password), is read as such: the will goes \
         out with its topic and payload, and in 5.0 with its User Properties in their order, \
         repeated names included.",
            &["MQTT-3.1.3-1", "5.0:MQTT-3.1.3-10"],
            |context| Box::pin(payload_fields_in_order(context)),
        )
    },
    ProbeCase {
        needs: &[Capability::Qos1, Capability::Qos2],
        ..v5(case(
            "connect-request-problem-information-0",
            "After a CONNECT with Request Problem Information 0, the broker puts no Reason String and \
             no User Property on any packet but PUBLISH, CONNACK and DISCONNECT: SUBACK, UNSUBACK (for \
             a filter never subscribed), PUBACK, PUBREC, PUBREL and PUBCOMP (also for an unknown packet \
             id) come without them.",
            &["5.0:MQTT-3.1.2-29"],
            |context| Box::pin(request_problem_information_0(context)),
        ))
    },
    ProbeCase {
        needs: &[Capability::Qos1],
        ..v5(case(
            "connect-topic-alias-within-maximum",
            "A client that accepts at most 2 topic aliases is never sent a Topic Alias above 2 (nor 0), \
         and every PUBLISH it gets names its topic, in full or by an alias set before on the \
         connection.",
            &["5.0:MQTT-3.1.2-26"],
            |context| Box::pin(topic_alias_within_maximum(context)),
        ))
    },
    v5(case(
        "connect-server-keep-alive-in-force",
        "When the broker answers a CONNECT (Keep Alive 60 s) with a Server Keep Alive, that value is \
         the connection's keep alive: a client silent after its CONNECT is closed one and a half \
         Server Keep Alives later (closing earlier is reported). Not applicable when the broker sends \
         none, or one over 6 s.",
        &["5.0:MQTT-3.1.2-21"],
        |context| Box::pin(server_keep_alive_in_force(context)),
    )),
];

/// `probe` for 5.0 only.
const fn v5(probe: ProbeCase) -> ProbeCase {
    ProbeCase {
        versions: &["5.0"],
        ..probe
    }
}

// ---- bytes ---------------------------------------------------------------------------------

/// A length-prefixed string or binary field.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn variable_byte_integer(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return out;
        }
    }
}

/// A CONNECT written field by field, for the CONNECTs the typed encoder refuses to write.
struct RawConnect {
    name: &'static [u8],
    level: u8,
    flags: u8,
    /// 5.0 layout: a Property Length and these properties after the Keep Alive.
    properties: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl RawConnect {
    /// A valid CONNECT of the case's version: Clean Start 1, keep alive 60 s, the client id alone.
    fn new(context: &Context, client: &str) -> RawConnect {
        RawConnect {
            name: b"MQTT",
            level: if context.v5() { 5 } else { 4 },
            flags: 0x02,
            properties: context.v5().then(Vec::new),
            payload: field(context.client_id(client).as_bytes()),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut body = field(self.name);
        body.push(self.level);
        body.push(self.flags);
        body.extend_from_slice(&60u16.to_be_bytes());
        if let Some(properties) = &self.properties {
            body.extend(variable_byte_integer(properties.len()));
            body.extend_from_slice(properties);
        }
        body.extend_from_slice(&self.payload);
        let mut packet = vec![0x10];
        packet.extend(variable_byte_integer(body.len()));
        packet.extend(body);
        packet
    }
}

/// Encodes typed packets back to back, as one write.
fn encoded(version: ProtocolVersion, packets: &[Packet]) -> Result<Vec<u8>, Failure> {
    let mut buffer = BytesMut::new();
    for packet in packets {
        encode(packet, version, &mut buffer)
            .map_err(|error| Failure::new(format!("cannot encode {}: {error}", summary(packet))))?;
    }
    Ok(buffer.to_vec())
}

// ---- refusals ------------------------------------------------------------------------------

/// The CONNECTs that break a rule of §3.1 (or a rule a CONNECT field must keep).
#[derive(Debug, Clone, Copy)]
enum Malformed {
    ReservedFlag,
    WillQos3,
    WillQosWithoutWill,
    WillRetainWithoutWill,
    WillFieldsMissing,
    WillFieldsWithoutWill,
    UserNameMissing,
    UserNameWithoutFlag,
    PasswordMissing,
    PasswordWithoutFlag,
    PasswordWithoutUserName,
    ClientIdMissing,
    ClientIdIllFormed,
    ClientIdNull,
    ClientIdOverrun,
    WillTopicIllFormed,
    UserNameIllFormed,
    ReceiveMaximumZero,
    MaximumPacketSizeZero,
    PropertyRepeated,
    PropertyNotForConnect,
    RequestProblemInformationTwo,
    AuthenticationDataWithoutMethod,
}

const WILL_FLAG: u8 = 0x04;
const WILL_QOS_1: u8 = 0x08;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD_FLAG: u8 = 0x40;
const USER_NAME_FLAG: u8 = 0x80;

/// The bytes of the malformed CONNECT `kind`.
fn malformed_bytes(context: &Context, kind: Malformed) -> Vec<u8> {
    let mut connect = RawConnect::new(context, "malformed");
    let client_id = context.client_id("malformed").into_bytes();
    // The will's fields: 5.0 puts the Will Properties (here none) first.
    let will = |topic: &[u8]| {
        let mut out = if context.v5() { vec![0x00] } else { Vec::new() };
        out.extend(field(topic));
        out.extend(field(b"will-payload"));
        out
    };
    let will_topic = context.topic("connect/will");
    match kind {
        Malformed::ReservedFlag => connect.flags |= 0x01,
        Malformed::WillQos3 => {
            connect.flags |= WILL_FLAG | 0x18;
            connect.payload.extend(will(will_topic.as_bytes()));
        }
        Malformed::WillQosWithoutWill => connect.flags |= WILL_QOS_1,
        Malformed::WillRetainWithoutWill => connect.flags |= WILL_RETAIN,
        Malformed::WillFieldsMissing => connect.flags |= WILL_FLAG,
        Malformed::WillFieldsWithoutWill => connect.payload.extend(will(will_topic.as_bytes())),
        Malformed::UserNameMissing => connect.flags |= USER_NAME_FLAG,
        Malformed::UserNameWithoutFlag => connect.payload.extend(field(b"user")),
        Malformed::PasswordMissing => {
            connect.flags |= USER_NAME_FLAG | PASSWORD_FLAG;
            connect.payload.extend(field(b"user"));
        }
        Malformed::PasswordWithoutFlag => {
            connect.flags |= USER_NAME_FLAG;
            connect.payload.extend(field(b"user"));
            connect.payload.extend(field(b"password"));
        }
        Malformed::PasswordWithoutUserName => {
            connect.flags |= PASSWORD_FLAG;
            connect.payload.extend(field(b"password"));
        }
        Malformed::ClientIdMissing => connect.payload.clear(),
        Malformed::ClientIdIllFormed => connect.payload = field(&[&client_id[..], b"\xff"].concat()),
        Malformed::ClientIdNull => connect.payload = field(&[&client_id[..], b"\x00x"].concat()),
        Malformed::ClientIdOverrun => {
            // The length says 200 bytes; the packet ends after the id's own bytes.
            connect.payload = 200u16.to_be_bytes().to_vec();
            connect.payload.extend_from_slice(&client_id);
        }
        Malformed::WillTopicIllFormed => {
            connect.flags |= WILL_FLAG;
            connect
                .payload
                .extend(will(&[will_topic.as_bytes(), b"/\xc0\xaf"].concat()));
        }
        Malformed::UserNameIllFormed => {
            connect.flags |= USER_NAME_FLAG;
            connect.payload.extend(field(b"user\xed\xa0\x80"));
        }
        Malformed::ReceiveMaximumZero => connect.properties = Some(vec![0x21, 0x00, 0x00]),
        Malformed::MaximumPacketSizeZero => connect.properties = Some(vec![0x27, 0x00, 0x00, 0x00, 0x00]),
        Malformed::PropertyRepeated => {
            connect.properties = Some(vec![0x11, 0x00, 0x00, 0x00, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x0A]);
        }
        Malformed::PropertyNotForConnect => connect.properties = Some(vec![0x23, 0x00, 0x01]),
        Malformed::RequestProblemInformationTwo => connect.properties = Some(vec![0x17, 0x02]),
        Malformed::AuthenticationDataWithoutMethod => {
            connect.properties = Some([&[0x16][..], &field(b"data")].concat());
        }
    }
    connect.bytes()
}

/// Sends the malformed CONNECT `kind`, expects the refusal and close, then service as usual.
async fn malformed_connect(context: Context, kind: Malformed) -> Result<Finding, Failure> {
    let bytes = malformed_bytes(&context, kind);
    let mut probe = context.open("malformed").await?;
    probe.send_raw(&bytes).await?;
    let received = until_closed(&context, &mut probe).await?;
    let notes = judge_refusal(&context, &received)?;
    still_serving(&context).await?;
    Ok(finding(notes))
}

/// What the broker sends until it closes the connection, within [`Context::wait`]. A CONNACK
/// accepting the CONNECT fails at once, without waiting for a close that will not come.
async fn until_closed(context: &Context, probe: &mut Probe) -> Result<Vec<Incoming>, Failure> {
    match read_until_closed(context, probe).await? {
        (received, true) => Ok(received),
        (_, false) => Err(Failure::expected(
            format!(
                "the broker did not close the connection within {} ms",
                context.wait().as_millis()
            ),
            "the close",
            "open",
        )),
    }
}

/// [`until_closed`], saying whether the close came (`false`: still open at the deadline).
async fn read_until_closed(context: &Context, probe: &mut Probe) -> Result<(Vec<Incoming>, bool), Failure> {
    let deadline = tokio::time::Instant::now() + context.wait();
    let mut received = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match probe.receive(remaining).await {
            Ok(Packet::ConnAck(connack)) if connack.reason_code.0 < 0x80 => {
                return Err(Failure::expected(
                    "the broker accepted a CONNECT it must refuse",
                    "the close (5.0: perhaps after a CONNACK of 0x80 or more)",
                    summary(&Packet::ConnAck(connack)),
                ))
            }
            Ok(packet) => received.push(Incoming::Packet(packet)),
            Err(ProbeError::Malformed(error)) => received.push(Incoming::Malformed(*error)),
            Err(ProbeError::Closed { .. }) => return Ok((received, true)),
            Err(ProbeError::Timeout { .. }) => return Ok((received, false)),
            Err(error) => return Err(error.into()),
        }
    }
}

/// What came before the close of a refused CONNECT: nothing, or (5.0) a CONNACK with a code of
/// 0x80 or more, which is noted.
fn judge_refusal(context: &Context, received: &[Incoming]) -> Result<Vec<String>, Failure> {
    let allowed = if context.v5() {
        "nothing, or a CONNACK with a code of 0x80 or more, then the close"
    } else {
        "the close, without a CONNACK (3.1.1 MQTT-3.1.4-1)"
    };
    let mut notes = Vec::new();
    for incoming in received {
        match incoming {
            Incoming::Packet(Packet::ConnAck(connack)) if context.v5() && connack.reason_code.0 >= 0x80 => {
                notes.push(format!("CONNACK {} before the close", connack.reason_code));
            }
            Incoming::Packet(packet) => {
                return Err(Failure::expected(
                    "the broker answered a CONNECT it must not accept",
                    allowed,
                    summary(packet),
                ))
            }
            Incoming::Malformed(error) => {
                return Err(Failure::expected(
                    "the broker answered a CONNECT it must not accept with a packet that does not decode",
                    allowed,
                    error.to_string(),
                ))
            }
        }
    }
    Ok(notes)
}

/// Another client connects and gets its PINGRESP: the broker still serves.
async fn still_serving(context: &Context) -> Result<(), Failure> {
    let serving = async {
        let mut probe = context.connected("after").await?;
        probe.send(&Packet::PingReq).await?;
        probe.expect(&Pattern::pingresp(), context.wait()).await?;
        probe.send(&Packet::Disconnect(Disconnect::default())).await?;
        probe.close().await;
        Ok::<(), Failure>(())
    };
    serving.await.map_err(|failure| Failure {
        message: format!(
            "after closing the offending connection the broker does not serve another client: {}",
            failure.message
        ),
        ..failure
    })
}

fn finding(notes: Vec<String>) -> Finding {
    if notes.is_empty() {
        Finding::Pass
    } else {
        Finding::Informational(notes.join("; "))
    }
}

fn closed_failure(error: ProbeError) -> Failure {
    Failure::expected(error.to_string(), "the broker closes the connection", "open")
}

// ---- cases ---------------------------------------------------------------------------------

/// CONNECT, then the first packet back must be a CONNACK.
async fn connack_is_the_first_packet(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("first").await?;
    probe
        .send(&Packet::Connect(Box::new(context.connect_packet("first"))))
        .await?;
    let first = probe.receive(context.wait()).await?;
    Pattern::connack().matches(&first).map_err(|differences| {
        Failure::expected(
            "the first packet is not a CONNACK",
            "CONNACK",
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok(Finding::Pass)
}

/// PINGREQ as the first packet: closed, no PINGRESP.
async fn first_packet_not_connect(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("early").await?;
    probe.send_raw(&[0xC0, 0x00]).await?;
    let received = until_closed(&context, &mut probe).await?;
    let notes = judge_refusal(&context, &received)?;
    still_serving(&context).await?;
    Ok(finding(notes))
}

/// A second CONNECT after the CONNACK: closed, no second CONNACK.
async fn second_connect_closes(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.connected("twice").await?;
    probe
        .send(&Packet::Connect(Box::new(context.connect_packet("twice"))))
        .await?;
    let report = probe
        .expect_close(Duration::ZERO..=context.wait())
        .await
        .map_err(closed_failure)?;
    if let Some(other) = report.others.first() {
        let actual = match other {
            Incoming::Packet(packet) => summary(packet),
            Incoming::Malformed(error) => error.to_string(),
        };
        return Err(Failure::expected(
            "the broker answered a second CONNECT instead of only closing the connection",
            "the close (5.0: perhaps after a DISCONNECT)",
            actual,
        ));
    }
    let mut notes = Vec::new();
    if let Some(disconnect) = &report.disconnect {
        if disconnect.reason_code != ReasonCode::PROTOCOL_ERROR {
            notes.push(format!(
                "DISCONNECT {} before the close (0x82 Protocol Error is the code for this error)",
                disconnect.reason_code
            ));
        }
    }
    still_serving(&context).await?;
    Ok(finding(notes))
}

/// Protocol name "MQTX".
async fn protocol_name_not_mqtt(context: Context) -> Result<Finding, Failure> {
    let mut connect = RawConnect::new(&context, "name");
    connect.name = b"MQTX";
    let mut probe = context.open("name").await?;
    probe.send_raw(&connect.bytes()).await?;
    let notes = match read_until_closed(&context, &mut probe).await? {
        (received, true) => judge_refusal(&context, &received)?,
        (received, false) if !context.v5() => {
            // 3.1.1 lets a broker follow another protocol; it only must not answer as 3.1.1.
            let mut notes = judge_refusal(&context, &received)?;
            notes.push(
                "the broker kept the connection open without answering (3.1.1 allows another protocol)".to_owned(),
            );
            notes
        }
        (_, false) => {
            return Err(Failure::expected(
                format!(
                    "the broker did not close the connection within {} ms",
                    context.wait().as_millis()
                ),
                "the close (perhaps after CONNACK 0x84)",
                "open",
            ))
        }
    };
    still_serving(&context).await?;
    Ok(finding(notes))
}

/// Protocol level 6 (5.0 run) or 2 (3.1.1 run). The connection is not recorded by the wire, which
/// decodes what the broker sends as 5.0 until a CONNECT it can read fixes the version: a 3.1.1
/// CONNACK would look malformed there. The probe's own trace is copied into the case's instead.
async fn protocol_version_unsupported(context: Context) -> Result<Finding, Failure> {
    let mut connect = RawConnect::new(&context, "level");
    connect.level = if context.v5() { 6 } else { 2 };
    let started = context.now();
    let mut probe = context
        .broker
        .probe(ProbeOptions::client().with_version(context.version))
        .await
        .map_err(|error| Failure::new(format!("cannot connect to {}: {error}", context.broker)))?;
    let sent = probe.send_raw(&connect.bytes()).await;
    let closed = match sent {
        Ok(()) => probe.expect_close(Duration::ZERO..=context.wait()).await,
        Err(error) => Err(error),
    };
    for entry in probe.trace().entries() {
        context.trace.event(
            started + entry.at,
            "level",
            format!("{} {}", entry.direction.arrow(), entry.summary()),
        );
    }
    let report = closed.map_err(closed_failure)?;
    if let Some(disconnect) = &report.disconnect {
        return Err(Failure::expected(
            "the broker answered an unsupported protocol level with a DISCONNECT",
            "a CONNACK refusing the level, then the close",
            summary(&Packet::Disconnect(disconnect.clone())),
        ));
    }
    let mut notes = Vec::new();
    if context.v5() {
        for incoming in &report.others {
            match incoming {
                Incoming::Packet(Packet::ConnAck(connack))
                    if connack.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {}
                Incoming::Packet(Packet::ConnAck(connack)) if connack.reason_code.0 >= 0x80 => {
                    notes.push(format!("CONNACK {} before the close (0x84 is the code named)", connack.reason_code));
                }
                Incoming::Malformed(error) => notes.push(format!(
                    "answered with a packet that is no 5.0 CONNACK ({error}): perhaps a 3.1.1 CONNACK, which 5.0 does not name"
                )),
                Incoming::Packet(packet) => {
                    return Err(Failure::expected(
                        "the broker accepted or answered a CONNECT of protocol level 6",
                        "nothing, or CONNACK 0x84, then the close",
                        summary(packet),
                    ))
                }
            }
        }
    } else {
        let refused = report.others.iter().any(|incoming| {
            matches!(incoming, Incoming::Packet(Packet::ConnAck(connack))
                if connack.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
        });
        if !refused || report.others.len() != 1 {
            let actual: Vec<String> = report
                .others
                .iter()
                .map(|incoming| match incoming {
                    Incoming::Packet(packet) => summary(packet),
                    Incoming::Malformed(error) => error.to_string(),
                })
                .collect();
            return Err(Failure::expected(
                "the broker did not refuse protocol level 2 with CONNACK return code 0x01",
                "CONNACK return code 0x01 (unacceptable protocol version), then the close",
                if actual.is_empty() {
                    "the close alone".to_owned()
                } else {
                    actual.join(", ")
                },
            ));
        }
    }
    still_serving(&context).await?;
    Ok(finding(notes))
}

/// A refused CONNECT and a PUBLISH in one write: the PUBLISH reaches no subscriber.
async fn refused_ignores_later_packets(context: Context) -> Result<Finding, Failure> {
    let topic = context.topic("refused/after");
    let mut watcher = context.connected("watcher").await?;
    watcher
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: topic.clone(),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }))
        .await?;
    watcher.expect(&Pattern::suback(), context.wait()).await?;

    let mut connect = context.connect_packet("refused");
    if context.v5() {
        connect.properties.authentication_method = Some("mh-no-such-method".to_owned());
    } else {
        connect.client_id = String::new();
        connect.clean_start = false;
    }
    let publish = Publish {
        topic: topic.clone().into(),
        payload: Bytes::from_static(b"must-not-be-processed"),
        ..Publish::default()
    };
    let bytes = encoded(
        context.version,
        &[Packet::Connect(Box::new(connect)), Packet::Publish(publish)],
    )?;
    let mut probe = context.open("refused").await?;
    probe.send_raw(&bytes).await?;
    let mut notes = Vec::new();
    match probe.receive(context.wait()).await {
        Ok(Packet::ConnAck(connack)) if connack.reason_code == ReasonCode::SUCCESS => {
            return Ok(Finding::NotApplicable(
                "the broker accepted the CONNECT this case needs refused".to_owned(),
            ))
        }
        Ok(Packet::Auth(_)) => {
            return Ok(Finding::NotApplicable(
                "the broker began an exchange with the authentication method this case expects refused".to_owned(),
            ))
        }
        Ok(Packet::ConnAck(_)) => {
            let report = probe
                .expect_close(Duration::ZERO..=context.wait())
                .await
                .map_err(closed_failure)?;
            if let Some(other) = report.others.first() {
                let actual = match other {
                    Incoming::Packet(packet) => summary(packet),
                    Incoming::Malformed(error) => error.to_string(),
                };
                return Err(Failure::expected(
                    "after refusing the CONNECT the broker answered what came after it",
                    "nothing after the CONNACK, then the close",
                    actual,
                ));
            }
        }
        Ok(other) => {
            return Err(Failure::expected(
                "the broker answered a refused CONNECT with something else than a CONNACK",
                "a CONNACK refusing it, then the close",
                summary(&other),
            ))
        }
        // Refused without a CONNACK: allowed.
        Err(ProbeError::Closed { .. }) => notes.push("refused without a CONNACK".to_owned()),
        Err(error) => return Err(error.into()),
    }
    match watcher.expect_nothing(context.ms(1000)).await {
        Ok(()) => {}
        Err(ProbeError::UnexpectedPacket { packet, .. }) => {
            return Err(Failure::expected(
                "the broker processed a PUBLISH sent after a CONNECT it refused",
                "the subscriber receives nothing",
                summary(&packet),
            ))
        }
        Err(error) => return Err(error.into()),
    }
    watcher.send(&Packet::Disconnect(Disconnect::default())).await?;
    Ok(finding(notes))
}

/// Two connections with an empty client id.
async fn empty_client_id(context: Context) -> Result<Finding, Failure> {
    let anonymous = |clean_start: bool| {
        let mut connect = context.connect_packet("anonymous");
        connect.client_id = String::new();
        connect.clean_start = clean_start;
        if context.v5() {
            connect.properties.session_expiry_interval_s = Some(30);
        }
        connect
    };
    let mut first = context.open("anonymous-1").await?;
    first.send(&Packet::Connect(Box::new(anonymous(true)))).await?;
    let Packet::ConnAck(connack) = first.expect(&Pattern::connack(), context.wait()).await? else {
        unreachable!("the pattern matches only a CONNACK");
    };
    if connack.reason_code != ReasonCode::SUCCESS {
        // 3.1.1's return code 0x02 reads as its 5.0 equivalent, 0x85.
        let fitting = if context.v5() {
            connack.reason_code.0 >= 0x80
        } else {
            connack.reason_code == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
        };
        if !fitting {
            return Err(Failure::expected(
                "the broker refused an empty client id with a code that does not say so",
                "CONNACK 0x00, or a refusal (5.0 0x85, 3.1.1 0x02) and the close",
                summary(&Packet::ConnAck(connack)),
            ));
        }
        first
            .expect_close(Duration::ZERO..=context.wait())
            .await
            .map_err(closed_failure)?;
        return Ok(Finding::Informational(format!(
            "the broker refuses an empty client id: CONNACK {}",
            connack.reason_code
        )));
    }
    let first_id = connack.properties.assigned_client_identifier.clone();
    let mut second = context.open("anonymous-2").await?;
    second.send(&Packet::Connect(Box::new(anonymous(true)))).await?;
    let Packet::ConnAck(second_connack) = second
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), context.wait())
        .await?
    else {
        unreachable!("the pattern matches only a CONNACK");
    };
    // Both connections are open: neither took the other's place.
    for probe in [&mut first, &mut second] {
        probe.send(&Packet::PingReq).await?;
        probe
            .expect(&Pattern::pingresp(), context.wait())
            .await
            .map_err(|error| Failure {
                message: format!(
                    "two clients with an empty client id cannot both stay connected (ids not unique?): {error}"
                ),
                ..Failure::from(error)
            })?;
    }
    if !context.v5() {
        second.send(&Packet::Disconnect(Disconnect::default())).await?;
        first.send(&Packet::Disconnect(Disconnect::default())).await?;
        return Ok(Finding::Pass);
    }
    let second_id = second_connack.properties.assigned_client_identifier.clone();
    let (Some(first_id), Some(second_id)) = (first_id, second_id) else {
        return Err(Failure::expected(
            "a CONNACK accepting an empty client id carries no Assigned Client Identifier",
            "CONNACK 0x00 with an Assigned Client Identifier",
            "CONNACK 0x00 without one",
        ));
    };
    if first_id.is_empty() || first_id == second_id {
        return Err(Failure::expected(
            "the assigned client identifiers are not unique",
            "two different, non-empty identifiers",
            format!("{first_id:?} and {second_id:?}"),
        ));
    }
    // The first client's session (expiry 30 s) is under its assigned id: reconnecting with that
    // id resumes it.
    first.send(&Packet::Disconnect(Disconnect::default())).await?;
    first
        .expect_close(Duration::ZERO..=context.wait())
        .await
        .map_err(closed_failure)?;
    let mut again = context.open("anonymous-1").await?;
    let mut resume = anonymous(false);
    resume.client_id = first_id.clone();
    resume.properties.session_expiry_interval_s = Some(0);
    again.send(&Packet::Connect(Box::new(resume))).await?;
    again
        .expect(
            &Pattern::connack()
                .reason_code(ReasonCode::SUCCESS)
                .session_present(true),
            context.wait(),
        )
        .await
        .map_err(|error| Failure {
            message: format!("reconnecting with the assigned id {first_id:?} does not resume its session: {error}"),
            ..Failure::from(error)
        })?;
    again.send(&Packet::Disconnect(Disconnect::default())).await?;
    let mut end = Disconnect::default();
    end.properties.session_expiry_interval_s = Some(0);
    second.send(&Packet::Disconnect(end)).await?;
    Ok(Finding::Pass)
}

/// 3.1.1: empty client id, Clean Session 0: CONNACK 0x02, then the close.
async fn empty_client_id_session_0(context: Context) -> Result<Finding, Failure> {
    let mut connect = context.connect_packet("anonymous");
    connect.client_id = String::new();
    connect.clean_start = false;
    let mut probe = context.open("anonymous").await?;
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    probe
        .expect(
            &Pattern::connack()
                .reason_code(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
                .session_present(false),
            context.wait(),
        )
        .await?;
    let report = probe
        .expect_close(Duration::ZERO..=context.wait())
        .await
        .map_err(closed_failure)?;
    if let Some(other) = report.others.first() {
        let actual = match other {
            Incoming::Packet(packet) => summary(packet),
            Incoming::Malformed(error) => error.to_string(),
        };
        return Err(Failure::expected(
            "the broker sent more after refusing the client id",
            "the close",
            actual,
        ));
    }
    still_serving(&context).await?;
    Ok(Finding::Pass)
}

/// A client id of 23 letters and digits, unique to the run.
async fn client_id_23_alphanumeric(context: Context) -> Result<Finding, Failure> {
    const ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let unique: String = context
        .client_id("alnum")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let mut client_id: String = format!("Z9{unique}");
    client_id.extend(ALPHABET.chars().rev());
    client_id.truncate(23);
    let mut connect = context.connect_packet("alnum");
    connect.client_id = client_id.clone();
    let mut probe = context.open("alnum").await?;
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), context.wait())
        .await
        .map_err(|error| Failure {
            message: format!("the client id {client_id:?} (23 letters and digits) was not accepted: {error}"),
            ..Failure::from(error)
        })?;
    probe.send(&Packet::PingReq).await?;
    probe.expect(&Pattern::pingresp(), context.wait()).await?;
    probe.send(&Packet::Disconnect(Disconnect::default())).await?;
    Ok(Finding::Pass)
}

/// Every payload field, in order; the will carries them back out.
async fn payload_fields_in_order(context: Context) -> Result<Finding, Failure> {
    let will_topic = context.topic("connect/fields");
    let user_properties: Vec<(String, String)> = vec![
        ("order".to_owned(), "1".to_owned()),
        ("zeta".to_owned(), "2".to_owned()),
        ("order".to_owned(), "3".to_owned()),
        ("alpha".to_owned(), "4".to_owned()),
    ];
    let mut watcher = context.connected("watcher").await?;
    watcher
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: will_topic.clone(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }))
        .await?;
    watcher.expect(&Pattern::suback(), context.wait()).await?;

    let mut connect = context.connect_packet("fields");
    let will_properties = if context.v5() {
        Properties::from(PropertyFields {
            content_type: Some("text/plain".to_owned()),
            user_properties: user_properties.clone(),
            ..PropertyFields::default()
        })
    } else {
        Properties::default()
    };
    connect.will = Some(Will {
        topic: will_topic.clone(),
        payload: Bytes::from_static(b"every-field-in-order"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: will_properties,
    });
    connect.user_name = Some(connect.user_name.take().unwrap_or_else(|| "mh-user".to_owned()));
    connect.password = Some(
        connect
            .password
            .take()
            .unwrap_or_else(|| Bytes::from_static(b"mh-password")),
    );
    let mut dying = context.open("fields").await?;
    dying.send(&Packet::Connect(Box::new(connect))).await?;
    let Packet::ConnAck(connack) = dying.expect(&Pattern::connack(), context.wait()).await? else {
        unreachable!("the pattern matches only a CONNACK");
    };
    if connack.reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD || connack.reason_code == ReasonCode::NOT_AUTHORIZED
    {
        return Ok(Finding::NotApplicable(format!(
            "the broker refused the user name and password (CONNACK {}); give credentials with -u/-P",
            connack.reason_code
        )));
    }
    if connack.reason_code != ReasonCode::SUCCESS {
        return Err(Failure::expected(
            "a CONNECT carrying every payload field was refused",
            "CONNACK 0x00",
            summary(&Packet::ConnAck(connack)),
        ));
    }
    // Gone without a DISCONNECT: the will goes out.
    dying.close().await;
    let Packet::Publish(will) = watcher
        .expect(
            &Pattern::publish()
                .topic(will_topic.clone())
                .payload(b"every-field-in-order")
                .qos(QoS::AtLeastOnce),
            context.wait(),
        )
        .await?
    else {
        unreachable!("the pattern matches only a PUBLISH");
    };
    if let Some(packet_id) = will.packet_id {
        watcher.send(&Packet::PubAck(PublishAck::new(packet_id))).await?;
    }
    if context.v5() {
        if will.properties.user_properties != user_properties {
            return Err(Failure::expected(
                "the will's User Properties were not kept in their order",
                format!("{user_properties:?}"),
                format!("{:?}", will.properties.user_properties),
            ));
        }
        if will.properties.content_type.as_deref() != Some("text/plain") {
            return Err(Failure::expected(
                "the will's Content Type was not kept",
                "text/plain",
                format!("{:?}", will.properties.content_type),
            ));
        }
    }
    watcher.send(&Packet::Disconnect(Disconnect::default())).await?;
    Ok(Finding::Pass)
}

/// With Request Problem Information 0, no Reason String or User Property outside PUBLISH,
/// CONNACK and DISCONNECT.
async fn request_problem_information_0(context: Context) -> Result<Finding, Failure> {
    let topic = context.topic("rpi/t");
    let unmatched = context.topic("rpi/nobody");
    let mut connect = context.connect_packet("quiet");
    connect.properties.request_problem_information = Some(false);
    let mut probe = context.connect("quiet", connect).await?;
    let packets = [
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: topic.clone(),
                options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            }],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: Properties::default(),
            filters: vec![context.topic("rpi/never-subscribed")],
        }),
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: unmatched.into(),
            packet_id: Some(3),
            payload: Bytes::from_static(b"nobody"),
            ..Publish::default()
        }),
        Packet::PubRel(PublishAck::new(4)),
    ];
    for packet in &packets {
        probe.send(packet).await?;
    }
    // Once the SUBACK is in, a QoS 2 message to our own subscription makes the broker send PUBREC
    // and PUBCOMP (to us as publisher) and PUBREL (to us as subscriber). The flows are answered
    // until everything came back and nothing more arrives for half a second.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + context.wait();
    let mut published = false;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let quiet = if published { context.ms(500) } else { remaining };
        let packet = match probe.receive(quiet.min(remaining)).await {
            Ok(packet) => packet,
            Err(ProbeError::Timeout { .. }) if published => break,
            Err(error) => return Err(error.into()),
        };
        match &packet {
            Packet::SubAck(_) if !published => {
                published = true;
                probe
                    .send(&Packet::Publish(Publish {
                        qos: QoS::ExactlyOnce,
                        topic: topic.clone().into(),
                        packet_id: Some(5),
                        payload: Bytes::from_static(b"round-trip"),
                        ..Publish::default()
                    }))
                    .await?;
            }
            Packet::PubRec(ack) if ack.packet_id == 5 => {
                probe.send(&Packet::PubRel(PublishAck::new(5))).await?;
            }
            Packet::Publish(publish) => match (publish.qos, publish.packet_id) {
                (QoS::ExactlyOnce, Some(packet_id)) => probe.send(&Packet::PubRec(PublishAck::new(packet_id))).await?,
                (QoS::AtLeastOnce, Some(packet_id)) => probe.send(&Packet::PubAck(PublishAck::new(packet_id))).await?,
                _ => {}
            },
            Packet::PubRel(ack) => probe.send(&Packet::PubComp(PublishAck::new(ack.packet_id))).await?,
            _ => {}
        }
        seen.push(packet);
    }
    for packet in &seen {
        let properties = match packet {
            Packet::SubAck(suback) => &suback.properties,
            Packet::UnsubAck(unsuback) => &unsuback.properties,
            Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => &ack.properties,
            Packet::Auth(auth) => &auth.properties,
            _ => continue,
        };
        if properties.reason_string.is_some() || !properties.user_properties.is_empty() {
            return Err(Failure::expected(
                "the broker sent a Reason String or User Property after Request Problem Information 0",
                "none on packets other than PUBLISH, CONNACK and DISCONNECT",
                summary(packet),
            ));
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|packet| packet.packet_type().name()).collect();
    for wanted in ["SUBACK", "UNSUBACK", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP"] {
        if !kinds.contains(&wanted) {
            return Err(Failure::expected(
                format!("no {wanted} came back"),
                "SUBACK, UNSUBACK, PUBACK, PUBREC, PUBREL and PUBCOMP",
                kinds.join(", "),
            ));
        }
    }
    probe.send(&Packet::Disconnect(Disconnect::default())).await?;
    Ok(Finding::Pass)
}

/// Topic Alias Maximum 2: aliases at most 2, every topic resolvable.
async fn topic_alias_within_maximum(context: Context) -> Result<Finding, Failure> {
    const MAXIMUM: u16 = 2;
    let topics: Vec<String> = (1..=4)
        .map(|index| context.topic(&format!("alias/max/t{index}")))
        .collect();
    let mut connect = context.connect_packet("aliased");
    connect.properties.topic_alias_maximum = Some(MAXIMUM);
    let mut subscriber = context.connect("aliased", connect).await?;
    subscriber
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: topics
                .iter()
                .map(|topic| Subscription {
                    filter: topic.clone(),
                    options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
                })
                .collect(),
        }))
        .await?;
    subscriber.expect(&Pattern::suback(), context.wait()).await?;
    let mut publisher = context.connected("publisher").await?;
    let mut expected = Vec::new();
    let mut packet_id = 0;
    for round in 1..=3 {
        for topic in &topics {
            packet_id += 1;
            let payload = format!("r{round}-{packet_id}");
            publisher
                .send(&Packet::Publish(Publish {
                    qos: QoS::AtLeastOnce,
                    topic: topic.clone().into(),
                    packet_id: Some(packet_id),
                    payload: Bytes::from(payload.clone().into_bytes()),
                    ..Publish::default()
                }))
                .await?;
            publisher.expect(&Pattern::puback(), context.wait()).await?;
            expected.push((topic.clone(), payload));
        }
    }
    let mut aliases: std::collections::BTreeMap<u16, String> = std::collections::BTreeMap::new();
    let mut used = false;
    for (topic, payload) in &expected {
        let Packet::Publish(publish) = subscriber
            .expect(&Pattern::publish().payload(payload.as_bytes()), context.wait())
            .await?
        else {
            unreachable!("the pattern matches only a PUBLISH");
        };
        let resolved = match publish.properties.topic_alias {
            Some(alias) if alias == 0 || alias > MAXIMUM => {
                return Err(Failure::expected(
                    format!("the broker sent Topic Alias {alias} to a client whose Topic Alias Maximum is {MAXIMUM}"),
                    format!("aliases 1 to {MAXIMUM}, or none"),
                    summary(&Packet::Publish(publish)),
                ));
            }
            Some(alias) => {
                used = true;
                if !publish.topic.is_empty() {
                    aliases.insert(alias, publish.topic.to_string());
                }
                aliases.get(&alias).cloned().unwrap_or_default()
            }
            None => publish.topic.to_string(),
        };
        if &resolved != topic {
            return Err(Failure::expected(
                format!("a PUBLISH for {topic} does not name it"),
                topic.clone(),
                summary(&Packet::Publish(publish)),
            ));
        }
    }
    publisher.send(&Packet::Disconnect(Disconnect::default())).await?;
    subscriber.send(&Packet::Disconnect(Disconnect::default())).await?;
    Ok(if used {
        Finding::Informational("the broker used topic aliases, all within the maximum".to_owned())
    } else {
        Finding::Pass
    })
}

/// A Server Keep Alive, when the broker sends one, is the keep alive in force.
async fn server_keep_alive_in_force(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("kept").await?;
    probe
        .send(&Packet::Connect(Box::new(context.connect_packet("kept"))))
        .await?;
    let Packet::ConnAck(connack) = probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), context.wait())
        .await?
    else {
        unreachable!("the pattern matches only a CONNACK");
    };
    let server_keep_alive_s = match connack.properties.server_keep_alive_s {
        None => {
            return Ok(Finding::NotApplicable(
                "the broker sent no Server Keep Alive for a Keep Alive of 60 s".to_owned(),
            ))
        }
        Some(0) => {
            return Ok(Finding::NotApplicable(
                "the broker's Server Keep Alive is 0 (no keep alive)".to_owned(),
            ))
        }
        // One and a half of it, plus the tolerance, must fit the time a timing case may take.
        Some(seconds) if seconds > 6 => {
            return Ok(Finding::NotApplicable(format!(
                "the broker's Server Keep Alive is {seconds} s, too long to time here"
            )))
        }
        Some(seconds) => u64::from(seconds),
    };
    let due = Duration::from_millis(server_keep_alive_s * 1500);
    let tolerance = Duration::from_secs(1);
    match probe.expect_close(Duration::ZERO..=due + tolerance).await {
        Ok(report) if report.after < due.saturating_sub(Duration::from_millis(100)) => Ok(Finding::Informational(
            format!(
                "closed {} ms after the CONNECT, before one and a half Server Keep Alives ({} ms)",
                report.after.as_millis(),
                due.as_millis()
            ),
        )),
        Ok(_) => Ok(Finding::Pass),
        Err(error) => Err(Failure::expected(
            format!("a silent client was not closed within one and a half Server Keep Alives of {server_keep_alive_s} s: {error}"),
            format!("the close by {} ms after the CONNECT (+1000 ms tolerance)", due.as_millis()),
            "open",
        )),
    }
}
