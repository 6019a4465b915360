"""The 5.0 Will Delay Interval with real clients (5.0 §3.1.2.5, §3.1.3.2.2).

Goal: after a network connection is lost (no DISCONNECT), the will goes out when its Will Delay
Interval has passed or the session ends, whichever is first (5.0 MQTT-3.1.2-8):
  - `delayed`: will delay 2 s, session expiry 30 s: the will arrives 2 s after the close, not before;
  - `session-end`: will delay 30 s, session expiry 1 s: it arrives when the session ends, after 1 s;
  - `reconnected`: will delay 2 s, the client reconnects to its session after 0.5 s: the will is
    never sent (MQTT-3.1.3-9).

Method: a paho watcher subscribes to rc/will/<id>/#; the will clients are paho clients driven by
hand whose sockets are shut down with no DISCONNECT. The `reconnected` client is closed first, so
that a wrongly sent will of it would reach the watcher before the `delayed` one.
Usage: will_delay.py PORT. Prints `WILL name seconds-after-close`, then `OK`.
"""

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from paho_common import Client, check, fail, out, port_argument, start_watchdog, unique


def will_client(port, base, name, will_delay_s, session_expiry_s):
    properties = Properties(PacketTypes.WILLMESSAGE)
    properties.WillDelayInterval = will_delay_s
    client = Client(port, unique("will-" + name), will=(base + "/" + name, b"will-of-" + name.encode(), 1, properties))
    client.connect(clean_start=True, session_expiry_s=session_expiry_s, threaded=False)
    return client


def main():
    start_watchdog(20)
    port = port_argument()
    base = "rc/will/" + unique("t")
    watcher = Client(port, unique("will-watcher"))
    watcher.connect()
    watcher.subscribe(base + "/#", qos=1)

    reconnected = will_client(port, base, "reconnected", will_delay_s=2, session_expiry_s=30)
    delayed = will_client(port, base, "delayed", will_delay_s=2, session_expiry_s=30)
    session_end = will_client(port, base, "session-end", will_delay_s=30, session_expiry_s=1)

    closed_at = {"reconnected": reconnected.close_abruptly()}
    closed_at["delayed"] = delayed.close_abruptly()
    closed_at["session-end"] = session_end.close_abruptly()

    time.sleep(0.5)
    back = Client(port, reconnected.client_id)
    session_present, _ = back.connect(clean_start=False, session_expiry_s=30)
    check(session_present == 1, "the `reconnected` session was gone after 0.5 s")

    # (name, earliest, latest) in seconds after the close, in the order they must arrive.
    expected = [("session-end", 1.0, 3.0), ("delayed", 2.0, 4.0)]
    for name, earliest, latest in expected:
        got = watcher.next_message(5.0)
        if got is None:
            fail("no will from %s" % name)
        arrived_at, message = got
        topic_name = message.topic.rsplit("/", 1)[-1]
        check(topic_name in closed_at, "message on %r" % message.topic)
        after_s = arrived_at - closed_at[topic_name]
        out("WILL %s %.3f" % (topic_name, after_s))
        check(topic_name == name, "the will of %s came where %s's was expected" % (topic_name, name))
        check(message.payload == b"will-of-" + name.encode(), "will payload %r" % message.payload)
        check(
            earliest <= after_s <= latest,
            "%s's will %.3f s after the close, expected %.1f..%.1f" % (name, after_s, earliest, latest),
        )
    # The `reconnected` will would have been due before the `delayed` one: it must not come.
    watcher.expect_no_message(0.5)
    back.disconnect()
    watcher.expect_no_message(0.2)
    watcher.disconnect()
    out("OK")


if __name__ == "__main__":
    main()
