"""Helpers shared by the paho scripts that broker/tests/it/real_clients.rs runs against our broker.

Every script takes the broker's port as its first argument and talks to 127.0.0.1. It prints
machine-checkable lines (`KEY value ...`, then `OK` at the end), and on a failed check prints
`FAIL <reason>` and exits 1. A watchdog ends it with exit code 2 if anything hangs, so a script
never outlives its own deadline (the Rust test has a longer one of its own).

Written for python3-paho-mqtt 1.6.1 (Debian), run with /usr/bin/python3 -B.
"""

import os
import queue
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
# How long any single expected event (CONNACK, SUBACK, ack, message) may take.
WAIT_S = 5.0


def out(*parts):
    print(*parts, flush=True)


def fail(reason):
    out("FAIL", reason)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the paho network threads must not keep the process alive.
    os._exit(1)


def check(condition, reason):
    if not condition:
        fail(reason)


def start_watchdog(seconds):
    """Ends the process with exit code 2 after `seconds`, whatever it is doing."""

    def expire():
        out("FAIL watchdog: the script did not finish within %.0f s" % seconds)
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def port_argument():
    if len(sys.argv) < 2:
        fail("usage: %s PORT" % sys.argv[0])
    return int(sys.argv[1])


def unique(name):
    """A client id or topic level unique to this process (tests run in parallel)."""
    return "rc-%s-%d" % (name, os.getpid())


def publish_properties(**values):
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


def reason_value(reason):
    """A paho reason code (ReasonCodes, or an int for the client's own errors) as an int."""
    return getattr(reason, "value", reason)


class Client:
    """A paho 5.0 client on its own network thread, with every callback turned into a queue."""

    def __init__(self, port, client_id, will=None):
        self.port = port
        self.client_id = client_id
        # No automatic reconnection: a test decides when a client reconnects.
        self.client = mqtt.Client(client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.disconnects = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        if will is not None:
            topic, payload, qos, properties = will
            self.client.will_set(topic, payload, qos=qos, properties=properties)

    # ---- callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.connacks.put((flags, reason, properties))

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        self.subacks.put((mid, reasons))

    def _on_message(self, client, userdata, message):
        # The arrival instant on the monotonic clock, for the timing checks.
        self.messages.put((time.monotonic(), message))

    def _on_disconnect(self, client, userdata, reason, properties=None):
        self.disconnects.put(reason)

    # ---- actions (main thread) -------------------------------------------------------------

    def connect(self, clean_start=True, session_expiry_s=None, threaded=True):
        """Connects and waits for the CONNACK; returns (session_present, CONNACK properties)."""
        properties = None
        if session_expiry_s is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry_s
        self.client.connect(HOST, self.port, keepalive=30, clean_start=clean_start, properties=properties)
        if threaded:
            self.client.loop_start()
        else:
            # Driven by hand, so that the caller can close the socket with no DISCONNECT.
            deadline = time.monotonic() + WAIT_S
            while self.connacks.empty() and time.monotonic() < deadline:
                self.client.loop(timeout=0.05)
        try:
            flags, reason, connack_properties = self.connacks.get(timeout=WAIT_S)
        except queue.Empty:
            fail("%s: no CONNACK within %.0f s" % (self.client_id, WAIT_S))
        check(reason_value(reason) == 0, "%s: CONNACK reason %s" % (self.client_id, reason))
        return flags.get("session present", 0), connack_properties

    def subscribe(self, topic_filter, qos):
        """Subscribes and waits for the SUBACK; fails unless `qos` is granted."""
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe failed locally: %s" % (self.client_id, result))
        try:
            acked_mid, reasons = self.subacks.get(timeout=WAIT_S)
        except queue.Empty:
            fail("%s: no SUBACK for %s within %.0f s" % (self.client_id, topic_filter, WAIT_S))
        check(acked_mid == mid, "%s: SUBACK for packet id %s, expected %s" % (self.client_id, acked_mid, mid))
        granted = [reason_value(reason) for reason in reasons]
        check(granted == [qos], "%s: SUBACK %s for %s, expected [%d]" % (self.client_id, granted, topic_filter, qos))

    def publish(self, topic, payload, qos, properties=None, retain=False):
        """Publishes and, for QoS 1 and 2, waits until the flow is complete (PUBACK / PUBCOMP)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        check(
            info.rc == mqtt.MQTT_ERR_SUCCESS,
            "%s: publish to %r failed locally: %s" % (self.client_id, topic, info.rc),
        )
        if qos > 0:
            info.wait_for_publish(timeout=WAIT_S)
            check(info.is_published(), "%s: QoS %d publish to %r not acknowledged" % (self.client_id, qos, topic))

    def next_message(self, timeout_s=WAIT_S):
        """(arrival instant, message), or None if none came within `timeout_s`."""
        try:
            return self.messages.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def expect_messages(self, count, timeout_s=WAIT_S):
        """Exactly `count` messages, each within `timeout_s` of the previous one."""
        messages = []
        for _ in range(count):
            received = self.next_message(timeout_s)
            if received is None:
                fail("%s: %d messages received, expected %d" % (self.client_id, len(messages), count))
            messages.append(received[1])
        return messages

    def expect_no_message(self, timeout_s):
        received = self.next_message(timeout_s)
        if received is not None:
            message = received[1]
            fail("%s: unexpected message on %r: %r" % (self.client_id, message.topic, message.payload))

    def disconnect(self):
        """A normal DISCONNECT (reason 0x00), then waits for the network thread to see it."""
        self.client.disconnect()
        try:
            self.disconnects.get(timeout=WAIT_S)
        except queue.Empty:
            fail("%s: the disconnect did not complete" % self.client_id)
        self.client.loop_stop()

    def close_abruptly(self):
        """Closes the socket with no DISCONNECT: for the broker, a lost network connection."""
        sock = self.client.socket()
        check(sock is not None, "%s: no socket to close" % self.client_id)
        try:
            sock.shutdown(2)  # socket.SHUT_RDWR: a FIN now, whatever else holds the socket
        except OSError:
            pass
        sock.close()
        return time.monotonic()
