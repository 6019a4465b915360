"""paho-mqtt over WebSocket (ws) or secure WebSocket (wss) against our broker: subscribe, publish
QoS 1 to itself, receive it, in MQTT 5.0 over the `mqtt` subprotocol paho asks for.

usage: websocket.py ws|wss HOST PORT PATH CAFILE. Prints `OK` on success, `FAIL <reason>` and exit 1
otherwise; a watchdog ends it with exit 2. Written for python3-paho-mqtt 1.6.1 (Debian).
"""

import queue
import sys

import paho.mqtt.client as mqtt

from paho_common import WAIT_S, check, fail, out, start_watchdog

start_watchdog(20)
if len(sys.argv) != 6:
    fail("usage: websocket.py ws|wss HOST PORT PATH CAFILE")
scheme, host, port, path, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

events = queue.Queue()
client = mqtt.Client(client_id="paho-" + scheme, protocol=mqtt.MQTTv5, transport="websockets")
client.ws_set_options(path=path)
if scheme == "wss":
    client.tls_set(ca_certs=cafile)
client.on_connect = lambda c, u, flags, rc, props=None: events.put(("connack", rc))
client.on_subscribe = lambda c, u, mid, codes, props=None: events.put(("suback", codes))
client.on_message = lambda c, u, message: events.put(("message", message.topic, message.payload))


def expect(kind):
    try:
        event = events.get(timeout=WAIT_S)
    except queue.Empty:
        fail("no %s within %.0f s" % (kind, WAIT_S))
    check(event[0] == kind, "expected %s, got %r" % (kind, event))
    return event


client.connect(host, port)
client.loop_start()
connack = expect("connack")
check(connack[1] == 0, "CONNACK %r" % (connack[1],))
client.subscribe("paho/" + scheme, qos=1)
expect("suback")
client.publish("paho/" + scheme, b"over websocket", qos=1)
message = expect("message")
check(message[2] == b"over websocket", "payload %r" % (message[2],))
out("RECEIVED", message[1])
client.disconnect()
client.loop_stop()
out("OK")
