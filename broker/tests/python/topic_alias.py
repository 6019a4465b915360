"""Topic aliases a real client sets and uses (5.0 §3.3.2.3.4).

Goal: the broker advertises a Topic Alias Maximum, accepts every alias from 1 up to it (5.0
MQTT-3.3.2-12), maps an empty topic plus a known alias to the topic last set for it, lets a
client re-map an alias, and delivers every message under its real topic to a subscriber that
allowed no aliases (MQTT-3.3.2-11: no alias towards it). Mappings belong to one network connection
(MQTT-3.3.2-7): a new connection using the alias with an empty topic is ended by the broker.

Method: a paho subscriber on rc/alias/<id>/#, a paho publisher sending (topic, alias) to set and
(empty topic, alias) to use, at QoS 0, 1 and 2, then the same alias on a fresh connection.
Usage: topic_alias.py PORT. Prints `TOPIC_ALIAS_MAXIMUM n`, `MESSAGE payload topic` lines,
`UNKNOWN_ALIAS_DISCONNECT reason`, then `OK`.
"""

import queue

from paho_common import (
    Client,
    check,
    fail,
    out,
    port_argument,
    publish_properties,
    reason_value,
    start_watchdog,
    unique,
)


def main():
    start_watchdog(20)
    port = port_argument()
    base = "rc/alias/" + unique("t")
    subscriber = Client(port, unique("alias-sub"))
    subscriber.connect()
    subscriber.subscribe(base + "/#", qos=2)
    publisher = Client(port, unique("alias-pub"))
    _, connack_properties = publisher.connect()
    maximum = getattr(connack_properties, "TopicAliasMaximum", 0)
    out("TOPIC_ALIAS_MAXIMUM %d" % maximum)
    check(maximum >= 2, "the broker allows %d topic aliases, this test needs 2" % maximum)

    # (topic sent, alias, QoS, payload, topic the subscriber must see)
    steps = [
        (base + "/one", 1, 1, b"p1-set", base + "/one"),
        ("", 1, 1, b"p2-use", base + "/one"),
        ("", 1, 0, b"p3-use-qos0", base + "/one"),
        (base + "/two", 1, 1, b"p4-remap", base + "/two"),
        ("", 1, 2, b"p5-use-qos2", base + "/two"),
        (base + "/three", maximum, 2, b"p6-set-max", base + "/three"),
        ("", maximum, 1, b"p7-use-max", base + "/three"),
        ("", 1, 1, b"p8-alias-1-kept", base + "/two"),
    ]
    expected = {}
    for topic, alias, qos, payload, seen_as in steps:
        publisher.publish(topic, payload, qos, publish_properties(TopicAlias=alias))
        expected[payload] = seen_as
    received = {}
    for message in subscriber.expect_messages(len(steps)):
        out("MESSAGE %s %s" % (message.payload.decode(), message.topic))
        check(message.payload not in received, "received twice: %r" % message.payload)
        received[message.payload] = message.topic
        properties = message.properties
        check(not hasattr(properties, "TopicAlias"), "a topic alias towards a subscriber that allowed none")
    check(received == expected, "received %r, expected %r" % (received, expected))
    check(publisher.disconnects.empty(), "the publisher was disconnected: %r" % publisher.disconnects.queue)
    publisher.disconnect()

    # A fresh connection knows no alias: empty topic + alias 1 is a Protocol Error (0x82).
    stranger = Client(port, unique("alias-stranger"))
    stranger.connect()
    stranger.client.publish("", b"p9-unknown-alias", qos=0, properties=publish_properties(TopicAlias=1))
    try:
        reason = stranger.disconnects.get(timeout=5)
    except queue.Empty:
        fail("the broker kept a connection that used an alias it never set")
    # paho 1.6.1 reads a DISCONNECT reason code only if properties follow it; otherwise it
    # reports the close as a lost connection (7).
    out("UNKNOWN_ALIAS_DISCONNECT %s" % reason_value(reason))
    check(reason_value(reason) in (0x82, 7), "disconnect reason %s" % reason)
    stranger.client.loop_stop()
    subscriber.expect_no_message(0.3)
    subscriber.disconnect()
    out("OK")


if __name__ == "__main__":
    main()
