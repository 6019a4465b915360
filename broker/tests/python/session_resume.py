"""A 5.0 session that outlives its connection, with a real client (5.0 §4.1, §3.1.2.4).

Goal: a client connecting with Clean Start 0 and a Session Expiry Interval gets Session Present 0
the first time (no session yet) and 1 when it comes back (5.0 MQTT-3.2.2-3); its subscription
survived the disconnection, and the QoS 1 messages published meanwhile are delivered on resumption
(MQTT-3.1.2-5), in order (MQTT-4.6.0-6), without subscribing again. A message whose Message Expiry
Interval passed while it waited is not delivered (MQTT-3.3.2-5); one still alive arrives with its
interval reduced by the time it waited (MQTT-3.3.2-6).

Method: paho client subscribes at QoS 1, sends DISCONNECT (session expiry 60 s), another client
publishes four QoS 1 messages (one expiring after 1 s), 2.2 s pass, the first client reconnects.
Usage: session_resume.py PORT. Prints `SESSION_PRESENT first n`, `SESSION_PRESENT resumed n`,
`MESSAGE payload expiry`, then `OK`.
"""

import time

from paho_common import Client, check, out, port_argument, publish_properties, start_watchdog, unique

SESSION_EXPIRY_S = 60
WAITED_S = 2.2


def main():
    start_watchdog(25)
    port = port_argument()
    client_id = unique("resume")
    topic = "rc/resume/" + unique("t")

    first = Client(port, client_id)
    session_present, _ = first.connect(clean_start=False, session_expiry_s=SESSION_EXPIRY_S)
    out("SESSION_PRESENT first %d" % session_present)
    check(session_present == 0, "session present on the very first connection")
    first.subscribe(topic, qos=1)
    first.disconnect()

    publisher = Client(port, unique("resume-pub"))
    publisher.connect()
    publisher.publish(topic, b"queued-1", qos=1)
    publisher.publish(topic, b"queued-2-expires", qos=1, properties=publish_properties(MessageExpiryInterval=1))
    publisher.publish(topic, b"queued-3-long", qos=1, properties=publish_properties(MessageExpiryInterval=60))
    publisher.publish(topic, b"queued-4", qos=1)
    publisher.disconnect()
    time.sleep(WAITED_S)

    resumed = Client(port, client_id)
    session_present, _ = resumed.connect(clean_start=False, session_expiry_s=SESSION_EXPIRY_S)
    out("SESSION_PRESENT resumed %d" % session_present)
    check(session_present == 1, "the session was not resumed")
    messages = resumed.expect_messages(3)
    for message in messages:
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        out("MESSAGE %s %s" % (message.payload.decode(), expiry))
        check(message.topic == topic, "topic %r" % message.topic)
        check(message.qos == 1, "%r delivered at QoS %d" % (message.payload, message.qos))
    payloads = [message.payload for message in messages]
    check(payloads == [b"queued-1", b"queued-3-long", b"queued-4"], "delivered %r" % payloads)
    expiry = getattr(messages[1].properties, "MessageExpiryInterval", None)
    check(expiry is not None, "the message expiry interval was dropped")
    # It waited at least 2.2 s: at most 58 s of its 60 may be left.
    check(50 <= expiry <= 58, "message expiry %d after waiting %.1f s" % (expiry, WAITED_S))
    check(not hasattr(messages[0].properties, "MessageExpiryInterval"), "an expiry on a message sent without")
    resumed.expect_no_message(0.3)
    resumed.disconnect()
    out("OK")


if __name__ == "__main__":
    main()
