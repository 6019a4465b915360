//! The async client: [`Client`] (cheap to clone) sends requests to one connection task, which owns
//! the stream and the sans-IO [`ClientCore`]; [`Events`] yields what the application must see
//! (messages, connects, disconnects).
//!
//! The task is the only place that reads the clock (`tokio::time::Instant::now()`, driven by
//! turmoil under simulation). Each wake-up handles what arrived, then writes every packet the core
//! produced in one write (coalesced). Every wait is bounded: dialing and CONNACK by
//! `connect_timeout`, requests by `request_timeout`, a silent server by keep alive plus
//! `ping_timeout`, reconnects by the policy's attempts; every queue has a capacity.
//!
//! The application must keep reading [`Events`]: when its queue is full the task waits, which
//! holds back the server through TCP (and stops keep alive while it waits).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_protocol::{
    decode, encode, ConnAck, DecodeContext, Packet, Properties, ReasonCode, SubAck, Subscription, SubscriptionOptions,
    UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use crate::core::{self, ClientCore, Close, Message, RequestError, ServerLimits, Token};
use crate::options::{BrokerUrl, ConnectOptions, UrlError};
use crate::transport::{BoxedStream, Dialer};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    /// TLS could not be set up: a CA file, certificate or key that cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsSetupError),
    /// The network connection could not be made, e.g. "connection refused to 127.0.0.1:1883".
    #[error("{0}")]
    Dial(io::Error),
    #[error("no connection to {address} within {waited:?}")]
    DialTimeout { address: String, waited: Duration },
    #[error("the server refused the connection: {0}")]
    Refused(ReasonCode),
    /// The connection ended (for the reason given) and the client stopped.
    #[error("the connection ended: {0}")]
    Closed(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        session_present: bool,
        connack: ConnAck,
    },
    Message(mqtt_protocol::Publish),
    /// The session the client held was not found on the server and was discarded.
    SessionDiscarded {
        inflight_dropped_count: usize,
    },
    /// The connection ended; `reason` says why.
    Disconnected {
        reason: String,
    },
    /// A reconnect attempt is scheduled after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
}

/// The end of a publish: the reason code of its PUBACK / PUBCOMP / failing PUBREC, or Success for
/// a QoS 0 message the connection accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    pub reason_code: ReasonCode,
}

/// What the client knows about its current connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    pub connected: bool,
    /// The client id in use (an assigned one once the server assigned it).
    pub client_id: String,
    /// The keep alive in force (the server's Server Keep Alive if it sent one).
    pub keep_alive: Option<Duration>,
    pub server_limits: Option<ServerLimits>,
}

/// Counters of the connection task, for tests and the load generator.
#[derive(Debug, Default)]
pub struct Statistics {
    pub packets_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub pings_sent: AtomicU64,
    pub connects: AtomicU64,
}

struct Shared {
    info: Mutex<ConnectionInfo>,
    statistics: Statistics,
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

enum Command {
    Publish {
        message: Message,
        reply: Reply<PublishOutcome>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        properties: Properties,
        reply: Reply<SubAck>,
    },
    Unsubscribe {
        filters: Vec<String>,
        properties: Properties,
        reply: Reply<UnsubAck>,
    },
    Disconnect {
        reason_code: ReasonCode,
        properties: Properties,
        reply: oneshot::Sender<()>,
    },
}

/// A handle to a connection task. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    request_timeout: Duration,
}

/// The application's event stream.
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event within `within`; `Err` on timeout.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Option<Event>, ClientError> {
        timeout(within, self.receiver.recv())
            .await
            .map_err(|_| ClientError::Timeout(within))
    }

    /// The next application message within `within`, skipping other events.
    pub async fn next_message(&mut self, within: Duration) -> Result<mqtt_protocol::Publish, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            match timeout(deadline.saturating_duration_since(Instant::now()), self.receiver.recv()).await {
                Err(_) => return Err(ClientError::Timeout(within)),
                Ok(None) => return Err(ClientError::Closed("the client stopped".into())),
                Ok(Some(Event::Message(publish))) => return Ok(publish),
                Ok(Some(_)) => {}
            }
        }
    }
}

/// A publish on its way; [`PublishHandle::wait`] gives its outcome.
pub struct PublishHandle {
    receiver: oneshot::Receiver<Result<PublishOutcome, ClientError>>,
    request_timeout: Duration,
}

impl PublishHandle {
    /// Waits for the outcome, at most the client's `request_timeout`.
    pub async fn wait(self) -> Result<PublishOutcome, ClientError> {
        let request_timeout = self.request_timeout;
        await_reply(self.receiver, request_timeout).await
    }
}

async fn await_reply<T>(
    receiver: oneshot::Receiver<Result<T, ClientError>>,
    within: Duration,
) -> Result<T, ClientError> {
    match timeout(within, receiver).await {
        Err(_) => Err(ClientError::Timeout(within)),
        Ok(Err(_)) => Err(ClientError::Closed("the client stopped".into())),
        Ok(Ok(result)) => result,
    }
}

impl Client {
    /// Connects to `url` (`mqtt://`, `mqtts://`, `ws://` or `wss://host:port`, with
    /// [`ConnectOptions::tls`] for the TLS ones) and returns once the server accepted the connection.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<(Client, Events), ClientError> {
        let url: BrokerUrl = url.parse()?;
        // Credentials in the URL stand in for those the options leave out.
        let mut options = options;
        if options.user_name.is_none() {
            options.user_name = url.username.clone();
        }
        if options.password.is_none() {
            options.password = url.password.clone().map(|password| Bytes::from(password.into_bytes()));
        }
        let dialer = crate::transport::dialer_for(&url, &options.tls)?;
        Client::connect_with(dialer, options).await
    }

    /// Connects over whatever `dialer` opens (TCP, turmoil, ...), and reconnects through it.
    pub async fn connect_with(
        dialer: Arc<dyn Dialer>,
        options: ConnectOptions,
    ) -> Result<(Client, Events), ClientError> {
        let stream = dial(dialer.as_ref(), options.connect_timeout).await?;
        let (commands, command_receiver) = mpsc::channel(options.queue_capacity);
        let (event_sender, receiver) = mpsc::channel(options.queue_capacity);
        let shared = Arc::new(Shared {
            info: Mutex::new(ConnectionInfo {
                client_id: options.client_id.clone(),
                ..ConnectionInfo::default()
            }),
            statistics: Statistics::default(),
        });
        let request_timeout = options.request_timeout;
        let (ready, ready_receiver) = oneshot::channel();
        let driver = Driver {
            decode_context: DecodeContext::client(options.version).with_maximum_packet_size(
                options
                    .maximum_packet_size
                    .unwrap_or(DecodeContext::MAXIMUM_PACKET_SIZE_MAX),
            ),
            reconnect: options.reconnect,
            core: ClientCore::new(options),
            dialer,
            commands: command_receiver,
            events: event_sender,
            shared: shared.clone(),
            publish_waiters: BTreeMap::new(),
            subscribe_waiters: BTreeMap::new(),
            unsubscribe_waiters: BTreeMap::new(),
            read_buffer: BytesMut::with_capacity(16 * 1024),
            write_buffer: BytesMut::with_capacity(16 * 1024),
            ready: Some(ready),
            disconnect_reply: None,
        };
        tokio::spawn(driver.run(stream));
        match ready_receiver.await {
            Ok(Ok(())) => Ok((
                Client {
                    commands,
                    shared,
                    request_timeout,
                },
                Events { receiver },
            )),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ClientError::Closed("the connection task ended".into())),
        }
    }

    /// Queues a message; waits only for room in the command queue. The handle gives the outcome.
    pub async fn publish(&self, message: Message) -> Result<PublishHandle, ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Publish { message, reply }).await?;
        Ok(PublishHandle {
            receiver,
            request_timeout: self.request_timeout,
        })
    }

    /// Publishes and waits for the outcome (the acknowledgement for QoS 1 and 2).
    pub async fn publish_and_wait(&self, message: Message) -> Result<PublishOutcome, ClientError> {
        self.publish(message).await?.wait().await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(
        &self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Result<SubAck, ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Subscribe {
            subscriptions,
            properties,
            reply,
        })
        .await?;
        await_reply(receiver, self.request_timeout).await
    }

    /// Subscribes to one filter at `options`.
    pub async fn subscribe_one(&self, filter: &str, options: SubscriptionOptions) -> Result<SubAck, ClientError> {
        self.subscribe(
            vec![Subscription {
                filter: filter.to_owned(),
                options,
            }],
            Properties::default(),
        )
        .await
    }

    pub async fn unsubscribe(&self, filters: Vec<String>, properties: Properties) -> Result<UnsubAck, ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Unsubscribe {
            filters,
            properties,
            reply,
        })
        .await?;
        await_reply(receiver, self.request_timeout).await
    }

    /// Sends DISCONNECT (Normal disconnection), closes, and stops the client.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_with(ReasonCode::NORMAL_DISCONNECTION, Properties::default())
            .await
    }

    /// Sends DISCONNECT with this reason code (5.0; 3.1.1 has none) and stops the client.
    pub async fn disconnect_with(&self, reason_code: ReasonCode, properties: Properties) -> Result<(), ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Disconnect {
            reason_code,
            properties,
            reply,
        })
        .await?;
        timeout(self.request_timeout, receiver)
            .await
            .map_err(|_| ClientError::Timeout(self.request_timeout))?
            .ok();
        Ok(())
    }

    pub fn info(&self) -> ConnectionInfo {
        self.shared.info.lock().map(|info| info.clone()).unwrap_or_default()
    }

    pub fn statistics(&self) -> &Statistics {
        &self.shared.statistics
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed("the client stopped".into()))
    }
}

async fn dial(dialer: &dyn Dialer, within: Duration) -> Result<BoxedStream, ClientError> {
    match timeout(within, dialer.dial()).await {
        Err(_) => Err(ClientError::DialTimeout {
            address: dialer.describe(),
            waited: within,
        }),
        Ok(Err(error)) => Err(ClientError::Dial(error)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// How a connection ended, as the task sees it.
enum Ended {
    /// The core asked to close (protocol reasons, the client's DISCONNECT, timeouts).
    Close(Close),
    /// The network failed or the server closed the stream.
    Network(String),
    /// The application dropped every [`Client`].
    Abandoned,
}

impl Ended {
    fn describe(&self) -> String {
        match self {
            Ended::Close(close) => close.to_string(),
            Ended::Network(reason) => reason.clone(),
            Ended::Abandoned => "the application dropped the client".into(),
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Ended::Close(close) => close.is_retryable(),
            Ended::Network(_) => true,
            Ended::Abandoned => false,
        }
    }
}

struct Driver {
    core: ClientCore,
    dialer: Arc<dyn Dialer>,
    reconnect: Option<crate::options::ReconnectPolicy>,
    decode_context: DecodeContext,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    publish_waiters: BTreeMap<Token, Reply<PublishOutcome>>,
    subscribe_waiters: BTreeMap<Token, Reply<SubAck>>,
    unsubscribe_waiters: BTreeMap<Token, Reply<UnsubAck>>,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    /// Told the outcome of the first connection attempt, then `None`.
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    disconnect_reply: Option<oneshot::Sender<()>>,
}

/// How many queued commands one wake-up takes at most, so that reading is never starved.
const COMMANDS_PER_WAKE_UP_MAX: usize = 256;

impl Driver {
    async fn run(mut self, first: BoxedStream) {
        let mut stream = Some(first);
        loop {
            let ended = match stream.take() {
                Some(stream) => self.run_connection(stream).await,
                None => Ended::Network("no connection".into()),
            };
            self.core.handle_connection_lost(Instant::now());
            self.set_connected(false);
            self.dispatch_events().await;
            let reason = ended.describe();
            tracing::debug!(%reason, "connection ended");
            if let Some(ready) = self.ready.take() {
                let error = match &ended {
                    Ended::Close(Close::Refused(code)) => ClientError::Refused(*code),
                    _ => ClientError::Closed(reason),
                };
                let _ = ready.send(Err(error));
                break;
            }
            self.emit(Event::Disconnected { reason: reason.clone() }).await;
            let Some(policy) = self.reconnect.filter(|_| ended.is_retryable()) else {
                break;
            };
            match self.reconnect_with(policy).await {
                Some(next) => stream = Some(next),
                None => break,
            }
        }
        self.fail_waiters("the client stopped");
        if let Some(reply) = self.disconnect_reply.take() {
            let _ = reply.send(());
        }
    }

    /// Dials again with backoff, serving commands meanwhile; `None` when the attempts run out or
    /// the application is gone.
    async fn reconnect_with(&mut self, policy: crate::options::ReconnectPolicy) -> Option<BoxedStream> {
        for attempt in 0..policy.attempts_max {
            let delay = policy.delay(attempt);
            self.emit(Event::Reconnecting {
                attempt: attempt + 1,
                delay,
            })
            .await;
            let wake_at = Instant::now() + delay;
            loop {
                tokio::select! {
                    biased;
                    command = self.commands.recv() => match command {
                        Some(command) => {
                            if !self.handle_command(command) {
                                return None;
                            }
                        }
                        None => return None,
                    },
                    _ = sleep_until(wake_at) => break,
                }
                self.dispatch_events().await;
            }
            match dial(self.dialer.as_ref(), self.core.options().connect_timeout).await {
                Ok(stream) => return Some(stream),
                Err(error) => tracing::debug!(%error, attempt, "reconnect failed"),
            }
        }
        None
    }

    async fn run_connection(&mut self, stream: BoxedStream) -> Ended {
        self.read_buffer.clear();
        self.write_buffer.clear();
        let (mut reader, mut writer) = tokio::io::split(stream);
        self.core.connect(Instant::now());
        self.shared.statistics.connects.fetch_add(1, Ordering::Relaxed);
        let ended = self.connection_loop(&mut reader, &mut writer).await;
        // Whatever the core still wants to say (a DISCONNECT) goes out before the close.
        if let Ended::Close(_) = ended {
            let _ = self.flush(&mut writer).await;
        }
        let _ = timeout(Duration::from_secs(1), writer.shutdown()).await;
        ended
    }

    async fn connection_loop(
        &mut self,
        reader: &mut ReadHalf<BoxedStream>,
        writer: &mut WriteHalf<BoxedStream>,
    ) -> Ended {
        loop {
            if let Err(error) = self.flush(writer).await {
                return Ended::Network(format!("write failed: {error}"));
            }
            self.dispatch_events().await;
            let deadline = self.core.poll_timeout();
            let result: Result<bool, Ended> = tokio::select! {
                biased;
                read = reader.read_buf(&mut self.read_buffer) => match read {
                    Ok(0) => Err(Ended::Network("the server closed the connection".into())),
                    Ok(_) => self.handle_bytes(),
                    Err(error) => Err(Ended::Network(format!("read failed: {error}"))),
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let mut keep_going = self.handle_command(command);
                        for _ in 1..COMMANDS_PER_WAKE_UP_MAX {
                            match self.commands.try_recv() {
                                Ok(command) if keep_going => keep_going = self.handle_command(command),
                                _ => break,
                            }
                        }
                        Ok(keep_going)
                    }
                    None => {
                        self.core.disconnect(ReasonCode::NORMAL_DISCONNECTION, Properties::default());
                        Ok(false)
                    }
                },
                _ = sleep_until_optional(deadline) => self.core.handle_timeout(Instant::now()).map(|()| true).map_err(Ended::Close),
            };
            match result {
                Ok(true) => {}
                Ok(false) if self.disconnect_reply.is_some() => return Ended::Close(Close::Requested),
                Ok(false) => return Ended::Abandoned,
                Err(ended) => return ended,
            }
        }
    }

    /// Decodes every whole packet in the read buffer and hands it to the core.
    fn handle_bytes(&mut self) -> Result<bool, Ended> {
        loop {
            match decode(&mut self.read_buffer, &self.decode_context) {
                Ok(Some(packet)) => {
                    self.shared.statistics.packets_received.fetch_add(1, Ordering::Relaxed);
                    self.core.handle_packet(Instant::now(), packet).map_err(Ended::Close)?;
                }
                Ok(None) => return Ok(true),
                Err(error) => return Err(Ended::Close(self.core.handle_decode_error(&error))),
            }
        }
    }

    /// Writes every packet the core produced, in one write.
    async fn flush(&mut self, writer: &mut WriteHalf<BoxedStream>) -> io::Result<()> {
        let now = Instant::now();
        let version = self.core.version();
        while let Some(packet) = self.core.poll_transmit(now) {
            if matches!(packet, Packet::PingReq) {
                self.shared.statistics.pings_sent.fetch_add(1, Ordering::Relaxed);
            }
            self.shared.statistics.packets_sent.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = encode(&packet, version, &mut self.write_buffer) {
                // The core validates what it queues; this is a bug, not a peer's doing.
                debug_assert!(false, "the core queued an invalid packet: {error}");
                tracing::error!(%error, "dropping an invalid packet");
            }
        }
        if !self.write_buffer.is_empty() {
            writer.write_all(&self.write_buffer).await?;
            writer.flush().await?;
            self.write_buffer.clear();
        }
        Ok(())
    }

    /// Applies one command; `false` when the connection should end (the client's DISCONNECT).
    fn handle_command(&mut self, command: Command) -> bool {
        match command {
            Command::Publish { message, reply } => {
                let qos = message.qos;
                match self.core.publish(message) {
                    // QoS 0 has no acknowledgement: accepted is done.
                    Ok(_) if qos == mqtt_protocol::QoS::AtMostOnce => {
                        let _ = reply.send(Ok(PublishOutcome {
                            reason_code: ReasonCode::SUCCESS,
                        }));
                    }
                    result => register(&mut self.publish_waiters, result, reply),
                }
            }
            Command::Subscribe {
                subscriptions,
                properties,
                reply,
            } => {
                let result = self.core.subscribe(subscriptions, properties);
                register(&mut self.subscribe_waiters, result, reply);
            }
            Command::Unsubscribe {
                filters,
                properties,
                reply,
            } => {
                let result = self.core.unsubscribe(filters, properties);
                register(&mut self.unsubscribe_waiters, result, reply);
            }
            Command::Disconnect {
                reason_code,
                properties,
                reply,
            } => {
                self.core.disconnect(reason_code, properties);
                self.disconnect_reply = Some(reply);
                return false;
            }
        }
        true
    }

    /// Routes the core's events: completions to their waiters, the rest to the application.
    async fn dispatch_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                core::Event::Connected {
                    session_present,
                    connack,
                } => {
                    self.set_connected(true);
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    self.emit(Event::Connected {
                        session_present,
                        connack,
                    })
                    .await;
                }
                core::Event::Message(publish) => self.emit(Event::Message(publish)).await,
                core::Event::Published { token, reason_code } => {
                    if let Some(reply) = self.publish_waiters.remove(&token) {
                        let _ = reply.send(Ok(PublishOutcome { reason_code }));
                    }
                }
                core::Event::PublishDropped { token } => {
                    if let Some(reply) = self.publish_waiters.remove(&token) {
                        let _ = reply.send(Err(ClientError::Closed("the session was discarded".into())));
                    }
                }
                core::Event::SubAck { token, suback } => {
                    if let Some(reply) = self.subscribe_waiters.remove(&token) {
                        let _ = reply.send(Ok(suback));
                    }
                }
                core::Event::UnsubAck { token, unsuback } => {
                    if let Some(reply) = self.unsubscribe_waiters.remove(&token) {
                        let _ = reply.send(Ok(unsuback));
                    }
                }
                core::Event::RequestAborted { token } => {
                    let error = || ClientError::Closed("the connection ended before the acknowledgement".into());
                    if let Some(reply) = self.subscribe_waiters.remove(&token) {
                        let _ = reply.send(Err(error()));
                    }
                    if let Some(reply) = self.unsubscribe_waiters.remove(&token) {
                        let _ = reply.send(Err(error()));
                    }
                }
                core::Event::SessionDiscarded { inflight_dropped_count } => {
                    self.emit(Event::SessionDiscarded { inflight_dropped_count }).await;
                }
            }
        }
    }

    async fn emit(&mut self, event: Event) {
        // A dropped Events receiver is fine: the application chose not to listen.
        let _ = self.events.send(event).await;
    }

    fn set_connected(&self, connected: bool) {
        if let Ok(mut info) = self.shared.info.lock() {
            info.connected = connected;
            info.client_id = self.core.client_id().to_owned();
            info.keep_alive = self.core.keep_alive();
            info.server_limits = connected.then(|| self.core.server_limits());
        }
    }

    fn fail_waiters(&mut self, reason: &str) {
        let error = || ClientError::Closed(reason.to_owned());
        for (_, reply) in std::mem::take(&mut self.publish_waiters) {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in std::mem::take(&mut self.subscribe_waiters) {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in std::mem::take(&mut self.unsubscribe_waiters) {
            let _ = reply.send(Err(error()));
        }
    }
}

/// Keeps `reply` until the core's event for `token` answers it, or answers a refusal at once.
fn register<T>(waiters: &mut BTreeMap<Token, Reply<T>>, result: Result<Token, RequestError>, reply: Reply<T>) {
    match result {
        Ok(token) => {
            waiters.insert(token, reply);
        }
        Err(error) => {
            let _ = reply.send(Err(error.into()));
        }
    }
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
