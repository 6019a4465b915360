//! One generator connection without I/O: the client's sans-IO core with its read and write buffers.
//! The publisher thread and the subscriber tasks move bytes between these buffers and their
//! sockets; everything MQTT happens here, through the same core and codec as every other client of
//! the project. Driving the core directly, rather than the async `Client` with a channel message
//! per publish, is what keeps the generator's own cost per message small.

use bytes::BytesMut;
use mqtt_client::core::{ClientCore, Event};
use mqtt_client::ConnectOptions;
use mqtt_protocol::{decode, encode, DecodeContext};
use tokio::time::Instant;

/// Bytes a read asks for at least: one read then usually takes many packets.
pub const READ_CHUNK: usize = 64 * 1024;

/// See the module documentation.
pub struct Link {
    pub core: ClientCore,
    context: DecodeContext,
    /// Bytes read and not yet decoded.
    pub input: BytesMut,
    /// Bytes encoded and not yet written.
    pub output: BytesMut,
}

impl Link {
    pub fn new(options: ConnectOptions) -> Link {
        let context = DecodeContext::client(options.version).with_maximum_packet_size(
            options
                .maximum_packet_size
                .unwrap_or(DecodeContext::MAXIMUM_PACKET_SIZE_MAX),
        );
        Link {
            core: ClientCore::new(options),
            context,
            // Small to start with: ten thousand idle connections must cost little; the buffers
            // grow with what a busy one reads and writes.
            input: BytesMut::new(),
            output: BytesMut::new(),
        }
    }

    /// Queues the CONNECT.
    pub fn connect(&mut self, now: Instant) -> Result<(), String> {
        self.core.connect(now);
        self.transmit(now)
    }

    /// Decodes every whole packet in `input` and hands it to the core; each event the core
    /// produces goes to `on_event`; then whatever the core wants sent is encoded into `output`.
    /// An error is why the connection must end (a DISCONNECT may be queued in `output` first).
    pub fn receive(&mut self, now: Instant, mut on_event: impl FnMut(Event)) -> Result<(), String> {
        loop {
            match decode(&mut self.input, &self.context) {
                Ok(Some(packet)) => {
                    let handled = self.core.handle_packet(now, packet);
                    while let Some(event) = self.core.poll_event() {
                        on_event(event);
                    }
                    if let Err(close) = handled {
                        self.transmit(now)?;
                        return Err(close.to_string());
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let close = self.core.handle_decode_error(&error);
                    self.transmit(now)?;
                    return Err(format!("{close}: {error}"));
                }
            }
        }
        self.transmit(now)
    }

    /// Encodes every packet the core has to send into `output`.
    pub fn transmit(&mut self, now: Instant) -> Result<(), String> {
        let version = self.core.version();
        while let Some(packet) = self.core.poll_transmit(now) {
            encode(&packet, version, &mut self.output)
                .map_err(|error| format!("cannot encode a {}: {error}", packet.packet_type().name()))?;
        }
        Ok(())
    }

    /// Keep alive and the CONNACK deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        self.core.handle_timeout(now).map_err(|close| close.to_string())?;
        self.transmit(now)
    }
}
