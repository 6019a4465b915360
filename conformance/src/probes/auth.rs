//! Probe cases of §4.12 (enhanced authentication) and §3.15 (AUTH) that need a broker which
//! offers a method: they run with `check --auth-method SCRAM-SHA-256 -u USER -P PASSWORD` (the
//! method the harness speaks, RFC 7677), and are not applicable without it or when the broker
//! turns the method down (a broker need not offer any). The cases every broker answers (an unknown
//! method, an AUTH without a method) are in [`super::connack`] and the YAML cases of 4.12.0.

use bytes::Bytes;
use mqtt_client::probe::{trace::summary, Probe, ProbeError};
use mqtt_client::scram::{self, ClientExchange};
use mqtt_protocol::{Auth, Packet, Properties, ReasonCode};
use mqtt_scenarios::scenario::{CaseLevel, Phase};

use super::connack::still_serving;
use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "scram-exchange-names-the-method-throughout",
        about: "A SCRAM-SHA-256 exchange with the run's credentials: the broker's challenge is an AUTH \
                with reason 0x18 and the CONNECT's Authentication Method, and the successful CONNACK \
                names that method too; the server's final message proves it holds the credentials.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.0-2", "5.0:MQTT-4.12.0-5", "5.0:MQTT-3.15.2-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(scram_exchange_names_the_method(context)),
    },
    ProbeCase {
        name: "scram-wrong-proof-refused",
        about: "A SCRAM-SHA-256 exchange signed with a wrong password is refused: a CONNACK of 0x80 or \
                above (or none), then the close; never a successful CONNACK. The broker goes on \
                serving others.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.0-4"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(scram_wrong_proof_refused(context)),
    },
    ProbeCase {
        name: "auth-answer-without-continue-refused",
        about: "A client that answers the broker's challenge with an AUTH whose reason is not 0x18 \
                (here 0x19) breaks the exchange: the broker must not accept the connection (a \
                CONNACK of 0x80 or above, or none, then the close).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.0-3"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(auth_answer_without_continue_refused(context)),
    },
    ProbeCase {
        name: "reauthentication-ends-in-auth-success",
        about: "After a SCRAM-SHA-256 sign-in, the client re-authenticates with AUTH 0x19 and the \
                same method: the broker challenges with AUTH 0x18, ends with AUTH 0x00 naming the \
                method, and the connection goes on.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.1-1", "5.0:MQTT-4.12.0-5"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(reauthentication_ends_in_success(context)),
    },
    ProbeCase {
        name: "reauthentication-wrong-proof-closes",
        about: "A re-authentication signed with a wrong password fails: the broker should send a \
                DISCONNECT with a code of 0x80 or above and must close the connection.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.1-2"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(reauthentication_wrong_proof_closes(context)),
    },
    ProbeCase {
        name: "reauthentication-with-another-method-closes",
        about: "A re-authentication naming another Authentication Method than the CONNECT's breaks \
                the client's duty: the broker closes the connection (a DISCONNECT of 0x80 or above \
                first, if any).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.12.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(reauthentication_with_another_method_closes(context)),
    },
];

/// The run's SCRAM credentials, or why the case does not apply.
fn credentials(context: &Context) -> Result<(String, String), Finding> {
    match (&context.auth_method, &context.names.username, &context.names.password) {
        (Some(method), Some(user), Some(password)) if method.eq_ignore_ascii_case(scram::METHOD) => {
            Ok((user.clone(), password.clone()))
        }
        _ => Err(Finding::NotApplicable(format!(
            "needs a broker that offers {} for the run's credentials: check --auth-method {} -u USER -P PASSWORD",
            scram::METHOD,
            scram::METHOD
        ))),
    }
}

fn auth(reason_code: ReasonCode, method: &str, data: Vec<u8>) -> Packet {
    let mut properties = Properties::default();
    properties.authentication_method = Some(method.to_owned());
    properties.authentication_data = Some(Bytes::from(data));
    Packet::Auth(Auth {
        reason_code,
        properties,
    })
}

/// What came of a CONNECT with SCRAM-SHA-256: the challenge, or the broker's refusal of the method.
enum Challenge {
    Auth(Auth),
    /// The broker turned the method down: the case does not apply.
    Declined(Finding),
}

/// Sends a CONNECT carrying `client`'s first message and reads the broker's challenge, checking
/// that it is an AUTH 0x18 naming the method (MQTT-4.12.0-2, -5).
async fn start(context: &Context, probe: &mut Probe, client: &ClientExchange) -> Result<Challenge, Failure> {
    let mut connect = context.connect_packet("scram");
    connect.user_name = None;
    connect.password = None;
    connect.properties.authentication_method = Some(scram::METHOD.to_owned());
    connect.properties.authentication_data = Some(Bytes::from(client.client_first()));
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    let what = "a CONNECT with Authentication Method SCRAM-SHA-256";
    match probe.receive(context.wait()).await {
        Ok(Packet::Auth(auth)) => {
            check_auth(&auth, ReasonCode::CONTINUE_AUTHENTICATION, what)?;
            Ok(Challenge::Auth(auth))
        }
        Ok(Packet::ConnAck(connack)) if connack.reason_code.0 >= 0x80 => {
            Ok(Challenge::Declined(Finding::NotApplicable(format!(
                "the broker refused SCRAM-SHA-256 before any challenge: CONNACK {}",
                connack.reason_code
            ))))
        }
        Ok(other) => Err(Failure::expected(
            format!("{what}: the broker did not challenge"),
            "AUTH 0x18 (Continue authentication) naming SCRAM-SHA-256",
            summary(&other),
        )),
        Err(ProbeError::Closed { .. }) => Ok(Challenge::Declined(Finding::NotApplicable(
            "the broker closed the connection on SCRAM-SHA-256 before any challenge".into(),
        ))),
        Err(error) => Err(error.into()),
    }
}

/// An AUTH from the broker: the reason expected, the method of the CONNECT.
fn check_auth(auth: &Auth, reason_code: ReasonCode, what: &str) -> Result<(), Failure> {
    if auth.reason_code != reason_code {
        return Err(Failure::expected(
            format!("{what}: the broker's AUTH has another reason code"),
            format!("AUTH {reason_code}"),
            format!("AUTH {}", auth.reason_code),
        ));
    }
    if auth.properties.authentication_method.as_deref() != Some(scram::METHOD) {
        return Err(Failure::expected(
            format!("{what}: the broker's AUTH does not name the CONNECT's method (MQTT-4.12.0-5)"),
            format!("Authentication Method {}", scram::METHOD),
            format!("{:?}", auth.properties.authentication_method),
        ));
    }
    Ok(())
}

/// Answers the challenge with the client-final message under `reason_code`.
async fn answer(
    probe: &mut Probe,
    client: &mut ClientExchange,
    challenge: &Auth,
    reason_code: ReasonCode,
) -> Result<(), Failure> {
    let server_first = challenge.properties.authentication_data.as_deref().unwrap_or_default();
    let client_final = client
        .client_final(server_first)
        .map_err(|error| Failure::new(format!("the broker's SCRAM challenge is not one: {error}")))?;
    probe.send(&auth(reason_code, scram::METHOD, client_final)).await?;
    Ok(())
}

/// A connection whose CONNECT started a SCRAM-SHA-256 exchange as the run's user, signing with
/// `password` (the run's when `None`), and the broker's challenge; or why the case does not apply.
async fn challenged(
    context: &Context,
    password: Option<&str>,
) -> Result<Result<(Probe, ClientExchange, Auth), Finding>, Failure> {
    let (user, own) = match credentials(context) {
        Ok(credentials) => credentials,
        Err(finding) => return Ok(Err(finding)),
    };
    let mut probe = context.open("scram").await?;
    let password = password.unwrap_or(&own);
    let client = ClientExchange::new(&user, password.as_bytes(), &scram::random_nonce());
    match start(context, &mut probe, &client).await? {
        Challenge::Auth(challenge) => Ok(Ok((probe, client, challenge))),
        Challenge::Declined(finding) => Ok(Err(finding)),
    }
}

/// A connection signed in with SCRAM-SHA-256, with the run's user name and password; or why the
/// case does not apply.
async fn signed_in(context: &Context) -> Result<Result<(Probe, String, String), Finding>, Failure> {
    let (mut probe, mut client, challenge) = match challenged(context, None).await? {
        Ok(challenged) => challenged,
        Err(finding) => return Ok(Err(finding)),
    };
    answer(&mut probe, &mut client, &challenge, ReasonCode::CONTINUE_AUTHENTICATION).await?;
    match probe.receive(context.wait()).await? {
        Packet::ConnAck(connack) if connack.reason_code == ReasonCode::SUCCESS => {
            let (user, password) = credentials(context).unwrap_or_default();
            Ok(Ok((probe, user, password)))
        }
        other => Err(Failure::expected(
            "SCRAM-SHA-256 with the run's credentials: not signed in (are -u/-P a SCRAM user of the broker?)",
            "CONNACK 0x00",
            summary(&other),
        )),
    }
}

async fn scram_exchange_names_the_method(context: Context) -> Result<Finding, Failure> {
    let (mut probe, mut client, challenge) = match challenged(&context, None).await? {
        Ok(challenged) => challenged,
        Err(finding) => return Ok(finding),
    };
    answer(&mut probe, &mut client, &challenge, ReasonCode::CONTINUE_AUTHENTICATION).await?;
    let connack = match probe.receive(context.wait()).await? {
        Packet::ConnAck(connack) if connack.reason_code == ReasonCode::SUCCESS => connack,
        other => {
            return Err(Failure::expected(
                "SCRAM-SHA-256 with the run's credentials: not signed in (are -u/-P a SCRAM user of the broker?)",
                "CONNACK 0x00",
                summary(&other),
            ))
        }
    };
    if connack.properties.authentication_method.as_deref() != Some(scram::METHOD) {
        return Err(Failure::expected(
            "the successful CONNACK of an enhanced authentication does not name its method (MQTT-4.12.0-5)",
            format!("Authentication Method {}", scram::METHOD),
            format!("{:?}", connack.properties.authentication_method),
        ));
    }
    probe.send(&Packet::PingReq).await?;
    probe
        .expect(&mqtt_client::probe::Pattern::pingresp(), context.wait())
        .await?;
    let server_final = connack.properties.authentication_data.as_deref().unwrap_or_default();
    match client.verify_server_final(server_final) {
        Ok(()) => Ok(Finding::Pass),
        // RFC 5802's, not MQTT's: worth saying, not a verdict on the statements.
        Err(error) => Ok(Finding::Informational(format!(
            "the CONNACK's server-final SCRAM message does not prove the server: {error}"
        ))),
    }
}

/// The broker's answer to a broken exchange: a failure CONNACK or none, then the close.
async fn judge_refused(context: &Context, probe: &mut Probe, what: &str) -> Result<Finding, Failure> {
    match probe.receive(context.wait()).await {
        Ok(Packet::ConnAck(connack)) if connack.reason_code.0 >= 0x80 => {}
        Ok(other) => {
            return Err(Failure::expected(
                format!("{what}: the broker did not refuse"),
                "a CONNACK of 0x80 or above, or the close",
                summary(&other),
            ))
        }
        Err(ProbeError::Closed { .. }) => {
            still_serving(context).await?;
            return Ok(Finding::Pass);
        }
        Err(error) => return Err(error.into()),
    }
    match probe.receive(context.wait()).await {
        Err(ProbeError::Closed { .. }) => {}
        Ok(other) => {
            return Err(Failure::expected(
                format!("{what}: the broker sent more after its refusal"),
                "the close",
                summary(&other),
            ))
        }
        Err(error) => return Err(error.into()),
    }
    still_serving(context).await?;
    Ok(Finding::Pass)
}

async fn scram_wrong_proof_refused(context: Context) -> Result<Finding, Failure> {
    let wrong = format!("{}-not", context.names.password.as_deref().unwrap_or_default());
    let (mut probe, mut client, challenge) = match challenged(&context, Some(&wrong)).await? {
        Ok(challenged) => challenged,
        Err(finding) => return Ok(finding),
    };
    answer(&mut probe, &mut client, &challenge, ReasonCode::CONTINUE_AUTHENTICATION).await?;
    judge_refused(&context, &mut probe, "a SCRAM-SHA-256 proof made with a wrong password").await
}

async fn auth_answer_without_continue_refused(context: Context) -> Result<Finding, Failure> {
    let (mut probe, mut client, challenge) = match challenged(&context, None).await? {
        Ok(challenged) => challenged,
        Err(finding) => return Ok(finding),
    };
    // The right proof, under the wrong reason code.
    answer(&mut probe, &mut client, &challenge, ReasonCode::RE_AUTHENTICATE).await?;
    judge_refused(
        &context,
        &mut probe,
        "an answer to the challenge with reason 0x19, not 0x18",
    )
    .await
}

async fn reauthentication_ends_in_success(context: Context) -> Result<Finding, Failure> {
    let (mut probe, user, password) = match signed_in(&context).await? {
        Ok(signed_in) => signed_in,
        Err(finding) => return Ok(finding),
    };
    let mut client = ClientExchange::new(&user, password.as_bytes(), &scram::random_nonce());
    probe
        .send(&auth(ReasonCode::RE_AUTHENTICATE, scram::METHOD, client.client_first()))
        .await?;
    let what = "a re-authentication (AUTH 0x19)";
    let challenge = match probe.receive(context.wait()).await? {
        Packet::Auth(auth) => auth,
        other => {
            return Err(Failure::expected(
                format!("{what}: the broker did not challenge"),
                "AUTH 0x18 naming SCRAM-SHA-256",
                summary(&other),
            ))
        }
    };
    check_auth(&challenge, ReasonCode::CONTINUE_AUTHENTICATION, what)?;
    answer(&mut probe, &mut client, &challenge, ReasonCode::CONTINUE_AUTHENTICATION).await?;
    match probe.receive(context.wait()).await? {
        Packet::Auth(done) => check_auth(&done, ReasonCode::SUCCESS, what)?,
        other => {
            return Err(Failure::expected(
                format!("{what}: the broker did not end it"),
                "AUTH 0x00 naming SCRAM-SHA-256",
                summary(&other),
            ))
        }
    }
    probe.send(&Packet::PingReq).await?;
    probe
        .expect(&mqtt_client::probe::Pattern::pingresp(), context.wait())
        .await?;
    Ok(Finding::Pass)
}

/// After a failed re-authentication: a DISCONNECT of 0x80 or above (SHOULD), then the close (MUST).
async fn judge_disconnected(context: &Context, probe: &mut Probe, what: &str) -> Result<Finding, Failure> {
    let mut disconnect_code = None;
    loop {
        match probe.receive(context.wait()).await {
            Ok(Packet::Disconnect(disconnect)) if disconnect_code.is_none() => {
                disconnect_code = Some(disconnect.reason_code);
            }
            Ok(other) => {
                return Err(Failure::expected(
                    format!("{what}: the broker went on"),
                    "a DISCONNECT of 0x80 or above, then the close",
                    summary(&other),
                ))
            }
            Err(ProbeError::Closed { .. }) => break,
            Err(error) => return Err(error.into()),
        }
    }
    still_serving(context).await?;
    match disconnect_code {
        Some(code) if code.0 >= 0x80 => Ok(Finding::Pass),
        Some(code) => Err(Failure::expected(
            format!("{what}: the DISCONNECT does not say it failed"),
            "a DISCONNECT of 0x80 or above",
            format!("DISCONNECT {code}"),
        )),
        None => context.should_not_met(format!("{what}: closed without a DISCONNECT first")),
    }
}

async fn reauthentication_wrong_proof_closes(context: Context) -> Result<Finding, Failure> {
    let (mut probe, user, password) = match signed_in(&context).await? {
        Ok(signed_in) => signed_in,
        Err(finding) => return Ok(finding),
    };
    let wrong = format!("{password}-not");
    let mut client = ClientExchange::new(&user, wrong.as_bytes(), &scram::random_nonce());
    probe
        .send(&auth(ReasonCode::RE_AUTHENTICATE, scram::METHOD, client.client_first()))
        .await?;
    let what = "a re-authentication with a wrong password";
    match probe.receive(context.wait()).await {
        Ok(Packet::Auth(challenge)) => {
            check_auth(&challenge, ReasonCode::CONTINUE_AUTHENTICATION, what)?;
            answer(&mut probe, &mut client, &challenge, ReasonCode::CONTINUE_AUTHENTICATION).await?;
            judge_disconnected(&context, &mut probe, what).await
        }
        // Refused at once: judged the same way.
        Ok(Packet::Disconnect(disconnect)) if disconnect.reason_code.0 >= 0x80 => {
            match probe.receive(context.wait()).await {
                Err(ProbeError::Closed { .. }) => {
                    still_serving(&context).await?;
                    Ok(Finding::Pass)
                }
                Ok(other) => Err(Failure::expected(
                    format!("{what}: more after the DISCONNECT"),
                    "the close",
                    summary(&other),
                )),
                Err(error) => Err(error.into()),
            }
        }
        Ok(other) => Err(Failure::expected(
            format!("{what}: the broker did not challenge"),
            "AUTH 0x18 naming SCRAM-SHA-256",
            summary(&other),
        )),
        Err(error) => Err(error.into()),
    }
}

async fn reauthentication_with_another_method_closes(context: Context) -> Result<Finding, Failure> {
    let (mut probe, user, password) = match signed_in(&context).await? {
        Ok(signed_in) => signed_in,
        Err(finding) => return Ok(finding),
    };
    let client = ClientExchange::new(&user, password.as_bytes(), &scram::random_nonce());
    probe
        .send(&auth(
            ReasonCode::RE_AUTHENTICATE,
            "mh-another-method",
            client.client_first(),
        ))
        .await?;
    judge_disconnected(&context, &mut probe, "a re-authentication naming another method").await
}
