//! A scenario's client at work: our [`Client`] (acks, pings and reconnects on its own) or a
//! packet-level connection that sends exactly what the scenario says. An actor runs where its
//! client lives (its own simulated host, or beside the driver) and takes commands from the
//! driver over a channel; what its connections carry is recorded on its [`Wire`] by the
//! recording streams, so an actor only acts and never judges.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::transport::{BoxedStream, Dialer};
use mqtt_client::{Client, ClientError, ConnectOptions, Event, Message};
use mqtt_protocol::{encode, Disconnect, Packet, ProtocolVersion, Publish, QoS, Subscribe, Unsubscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::scenario::ClientKind;
use crate::wire::{Clock, KillSwitch, Trace};

/// How long a dial, a write or a request of our client may take before the action fails.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// What the driver asks an actor to do.
#[derive(Debug)]
pub enum Command {
    Connect(Box<ConnectOptions>),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    /// `wait_ack`: our client waits for the acknowledgement of a QoS 1/2 message.
    Publish {
        publish: Publish,
        wait_ack: bool,
    },
    /// A probe's packet, as it is (acks, PINGREQ).
    Send(Packet),
    Raw(Bytes),
    Disconnect(Disconnect),
    /// Ends the connection without DISCONNECT.
    Close,
    /// The run is over: close what is open and stop.
    Finish,
}

type Reply = oneshot::Sender<Result<(), String>>;

/// The driver's end of an actor.
#[derive(Debug, Clone)]
pub struct ActorHandle {
    commands: mpsc::UnboundedSender<(Command, Reply)>,
}

impl ActorHandle {
    /// Runs `command` and waits for its end (bounded by the actor's own timeouts, and here by
    /// twice that, so a stuck actor cannot hang the driver).
    pub async fn run(&self, command: Command) -> Result<(), String> {
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send((command, reply))
            .map_err(|_| "the client's actor has stopped".to_owned())?;
        match timeout(ACTION_TIMEOUT * 2, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the client's actor stopped before answering".to_owned()),
            Err(_) => Err(format!(
                "no answer from the client's actor within {:?}",
                ACTION_TIMEOUT * 2
            )),
        }
    }
}

/// Creates an actor: the handle for the driver and the future to run where the client lives.
pub fn actor(
    name: String,
    kind: ClientKind,
    dialer: Arc<dyn Dialer>,
    kill: KillSwitch,
    trace: Trace,
    clock: Clock,
) -> (ActorHandle, impl std::future::Future<Output = ()>) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let state = Actor {
        name,
        kind,
        dialer,
        kill,
        trace,
        clock,
        client: None,
        raw: None,
        version: ProtocolVersion::V5,
    };
    (ActorHandle { commands }, state.run(receiver))
}

struct Actor {
    name: String,
    kind: ClientKind,
    dialer: Arc<dyn Dialer>,
    kill: KillSwitch,
    trace: Trace,
    clock: Clock,
    client: Option<Client>,
    raw: Option<RawConnection>,
    version: ProtocolVersion,
}

/// A probe's connection: the write half, and a task that reads (and so records) everything the
/// broker sends until the connection ends.
struct RawConnection {
    writer: WriteHalf<BoxedStream>,
}

impl Actor {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<(Command, Reply)>) {
        while let Some((command, reply)) = receiver.recv().await {
            let finish = matches!(command, Command::Finish);
            let result = self.handle(command).await;
            // The driver may have given up waiting; nothing to do about it here.
            let _ = reply.send(result);
            if finish {
                return;
            }
        }
        let _ = self.handle(Command::Finish).await;
    }

    async fn handle(&mut self, command: Command) -> Result<(), String> {
        match (self.kind, command) {
            (_, Command::Finish) => {
                self.finish().await;
                Ok(())
            }
            (kind, Command::Close) => {
                // Streams die at their next turn; our client's reconnects are refused until the
                // scenario connects it again.
                self.kill.kill(kind == ClientKind::Client);
                self.client = None;
                self.raw = None;
                Ok(())
            }
            (ClientKind::Client, Command::Connect(options)) => self.connect_client(*options).await,
            (ClientKind::Probe, Command::Connect(options)) => self.connect_raw(*options).await,
            (ClientKind::Client, command) => self.client_command(command).await,
            (ClientKind::Probe, command) => self.raw_command(command).await,
        }
    }

    async fn connect_client(&mut self, options: ConnectOptions) -> Result<(), String> {
        self.kill.allow_dials();
        self.version = options.version;
        let (client, mut events) = Client::connect_with(self.dialer.clone(), options)
            .await
            .map_err(|error| error.to_string())?;
        let (trace, clock, name) = (self.trace.clone(), self.clock.clone(), self.name.clone());
        // The packets are on the wire already; what only the client knows goes in the trace.
        // Draining the events also keeps the client from waiting on a full event queue.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let what = match event {
                    Event::Reconnecting { attempt, delay } => {
                        format!("client: reconnecting, attempt {attempt} after {} ms", delay.as_millis())
                    }
                    Event::SessionDiscarded { inflight_dropped_count } => {
                        format!("client: session discarded ({inflight_dropped_count} in flight dropped)")
                    }
                    Event::Disconnected { reason } => format!("client: disconnected: {reason}"),
                    Event::Connected { .. } | Event::Message(_) => continue,
                };
                trace.event(clock.now(), &name, what);
            }
        });
        self.client = Some(client);
        Ok(())
    }

    async fn client_command(&mut self, command: Command) -> Result<(), String> {
        let Some(client) = self.client.as_ref() else {
            return Err(format!("{} is not connected", self.name));
        };
        let bounded = |error: ClientError| error.to_string();
        match command {
            Command::Subscribe(subscribe) => {
                client
                    .subscribe(subscribe.subscriptions, subscribe.properties)
                    .await
                    .map_err(bounded)?;
            }
            Command::Unsubscribe(unsubscribe) => {
                client
                    .unsubscribe(unsubscribe.filters, unsubscribe.properties)
                    .await
                    .map_err(bounded)?;
            }
            Command::Publish { publish, wait_ack } => {
                let message = Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    properties: publish.properties,
                };
                let handle = client.publish(message).await.map_err(bounded)?;
                if wait_ack && publish.qos != QoS::AtMostOnce {
                    timeout(ACTION_TIMEOUT, handle.wait())
                        .await
                        .map_err(|_| format!("no acknowledgement within {ACTION_TIMEOUT:?}"))?
                        .map_err(bounded)?;
                }
            }
            Command::Disconnect(disconnect) => {
                let result = client
                    .disconnect_with(disconnect.reason_code, disconnect.properties)
                    .await;
                self.client = None;
                result.map_err(bounded)?;
            }
            Command::Send(_) | Command::Raw(_) => {
                return Err(format!("{} is our client: it sends packets of its own", self.name));
            }
            Command::Connect(_) | Command::Close | Command::Finish => {}
        }
        Ok(())
    }

    async fn connect_raw(&mut self, options: ConnectOptions) -> Result<(), String> {
        self.raw = None;
        self.kill.allow_dials();
        self.version = options.version;
        let stream = timeout(ACTION_TIMEOUT, self.dialer.dial())
            .await
            .map_err(|_| format!("no connection to {} within {ACTION_TIMEOUT:?}", self.dialer.describe()))?
            .map_err(|error| error.to_string())?;
        let (reader, writer) = tokio::io::split(stream);
        tokio::spawn(drain(reader));
        self.raw = Some(RawConnection { writer });
        self.raw_command(Command::Send(Packet::Connect(Box::new(options.to_connect()))))
            .await
    }

    async fn raw_command(&mut self, command: Command) -> Result<(), String> {
        let version = self.version;
        let Some(raw) = self.raw.as_mut() else {
            return Err(format!("{} is not connected", self.name));
        };
        let (bytes, then_close) = match command {
            Command::Subscribe(subscribe) => (encoded(&Packet::Subscribe(subscribe), version)?, false),
            Command::Unsubscribe(unsubscribe) => (encoded(&Packet::Unsubscribe(unsubscribe), version)?, false),
            Command::Publish { publish, .. } => (encoded(&Packet::Publish(publish), version)?, false),
            Command::Send(packet) => (encoded(&packet, version)?, false),
            Command::Raw(bytes) => (bytes, false),
            // The client closes the connection after its DISCONNECT (5.0 MQTT-3.14.4-1).
            Command::Disconnect(disconnect) => (encoded(&Packet::Disconnect(disconnect), version)?, true),
            Command::Connect(_) | Command::Close | Command::Finish => return Ok(()),
        };
        let written = timeout(ACTION_TIMEOUT, async {
            raw.writer.write_all(&bytes).await?;
            raw.writer.flush().await
        })
        .await
        .map_err(|_| format!("could not write within {ACTION_TIMEOUT:?}"))?;
        if then_close {
            let _ = timeout(ACTION_TIMEOUT, raw.writer.shutdown()).await;
            self.raw = None;
        }
        written.map_err(|error| format!("write failed: {error}"))
    }

    async fn finish(&mut self) {
        if let Some(client) = self.client.take() {
            // A normal end: no will, and the broker keeps the session as the scenario set it.
            let _ = timeout(ACTION_TIMEOUT, client.disconnect()).await;
        }
        if let Some(mut raw) = self.raw.take() {
            let _ = timeout(ACTION_TIMEOUT, raw.writer.shutdown()).await;
        }
    }
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<Bytes, String> {
    let mut buffer = BytesMut::new();
    encode(packet, version, &mut buffer)
        .map_err(|error| format!("cannot encode {}: {error}", packet.packet_type().name()))?;
    Ok(buffer.freeze())
}

/// Reads until the connection ends; the recording stream underneath keeps what arrives.
async fn drain(mut reader: ReadHalf<BoxedStream>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
