"""Shared subscriptions with real clients (5.0 §4.8.2).

Goal: a message published to a topic that a shared group subscribes to goes to exactly one member
of the group; with two members, both get some (the broker spreads the load); granted QoS is kept
(5.0 MQTT-4.8.2-3). A non-shared subscription on the same topic is independent of the group: it
gets every message, in order (MQTT-4.6.0-6).

Method: two paho subscribers on $share/g/<topic> at QoS 1, a third on <topic>, one publisher
sending N QoS 1 messages; every payload is accounted for.
Usage: shared_subscriptions.py PORT [N]. Prints `COUNT a k`, `COUNT b k`, `COUNT plain N`, `OK`.
"""

import sys
import time

from paho_common import WAIT_S, Client, check, out, port_argument, start_watchdog, unique


def main():
    start_watchdog(25)
    port = port_argument()
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    topic = "rc/shared/" + unique("t")
    members = {}
    for name in ("a", "b"):
        member = Client(port, unique("shared-" + name))
        member.connect()
        member.subscribe("$share/g/" + topic, qos=1)
        members[name] = member
    plain = Client(port, unique("shared-plain"))
    plain.connect()
    plain.subscribe(topic, qos=1)
    publisher = Client(port, unique("shared-pub"))
    publisher.connect()
    payloads = [("m%03d" % index).encode() for index in range(count)]
    for payload in payloads:
        publisher.publish(topic, payload, qos=1)

    plain_payloads = [message.payload for message in plain.expect_messages(count)]
    check(plain_payloads == payloads, "the plain subscriber got %r" % plain_payloads)

    received = {name: [] for name in members}
    total = 0
    deadline = time.monotonic() + WAIT_S
    while total < count and time.monotonic() < deadline:
        for name, member in members.items():
            got = member.next_message(0.01)
            if got is not None:
                message = got[1]
                check(message.topic == topic, "member %s got topic %r" % (name, message.topic))
                check(message.qos == 1, "member %s got QoS %d" % (name, message.qos))
                received[name].append(message.payload)
                total += 1
    check(total == count, "the group got %d of %d messages: %r" % (total, count, received))
    # Nothing more may come: every message went to exactly one member.
    for member in members.values():
        member.expect_no_message(0.3)
    for name in members:
        out("COUNT %s %d" % (name, len(received[name])))
    out("COUNT plain %d" % len(plain_payloads))
    everything = sorted(received["a"] + received["b"])
    check(everything == payloads, "group deliveries %r" % received)
    check(all(len(received[name]) > 0 for name in members), "a member got nothing: %r" % received)
    publisher.disconnect()
    plain.disconnect()
    for member in members.values():
        member.disconnect()
    out("OK")


if __name__ == "__main__":
    main()
