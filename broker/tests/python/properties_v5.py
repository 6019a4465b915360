"""5.0 PUBLISH properties through the broker, paho to paho.

Goal: what a publisher attaches to a message reaches the subscriber unchanged: User Properties in
their order, duplicates included (5.0 MQTT-3.3.2-17, MQTT-3.3.2-18), Content Type (MQTT-3.3.2-20),
Response Topic (MQTT-3.3.2-15), Correlation Data (MQTT-3.3.2-16), Payload Format Indicator
(MQTT-3.3.2-4); the Message Expiry Interval comes down by the time the message waited, so it is at
most what was sent (MQTT-3.3.2-6). Nothing is added: no Topic Alias, since the subscriber allowed
none (MQTT-3.3.2-11), and no Subscription Identifier, since it asked for none.

Method: one subscriber at QoS 2, one publisher sending the same properties at QoS 0, 1 and 2.
Usage: properties_v5.py PORT. Prints one `QOS<n> ...` line per property checked, then `OK`.
"""

from paho_common import Client, check, out, port_argument, publish_properties, start_watchdog, unique

USER_PROPERTIES = [("b", "2"), ("a", "1"), ("b", "1"), ("z\u00fc", "x y"), ("empty", "")]
CONTENT_TYPE = "application/json; charset=utf-8"
CORRELATION_DATA = b"\x00\x01corr\xff"
MESSAGE_EXPIRY_S = 3600


def main():
    start_watchdog(20)
    port = port_argument()
    topic = "rc/props/" + unique("t")
    response_topic = "rc/props/reply/" + unique("t")
    subscriber = Client(port, unique("props-sub"))
    subscriber.connect()
    subscriber.subscribe(topic, qos=2)
    publisher = Client(port, unique("props-pub"))
    publisher.connect()
    for qos in (0, 1, 2):
        payload = ('{"qos": %d, "text": "gr\u00fc\u00df"}' % qos).encode("utf-8")
        properties = publish_properties(
            UserProperty=list(USER_PROPERTIES),
            ContentType=CONTENT_TYPE,
            ResponseTopic=response_topic,
            CorrelationData=CORRELATION_DATA,
            PayloadFormatIndicator=1,
            MessageExpiryInterval=MESSAGE_EXPIRY_S,
        )
        publisher.publish(topic, payload, qos, properties)
        (message,) = subscriber.expect_messages(1)
        received = message.properties
        check(message.topic == topic, "QoS %d: topic %r" % (qos, message.topic))
        check(message.payload == payload, "QoS %d: payload %r" % (qos, message.payload))
        check(message.qos == qos, "QoS %d: delivered at QoS %d" % (qos, message.qos))
        check(received is not None, "QoS %d: no properties" % qos)
        user_properties = getattr(received, "UserProperty", None)
        out("QOS%d USER_PROPERTIES %r" % (qos, user_properties))
        check(user_properties == USER_PROPERTIES, "QoS %d: user properties %r" % (qos, user_properties))
        out("QOS%d CONTENT_TYPE %r" % (qos, getattr(received, "ContentType", None)))
        check(getattr(received, "ContentType", None) == CONTENT_TYPE, "QoS %d: content type" % qos)
        out("QOS%d RESPONSE_TOPIC %r" % (qos, getattr(received, "ResponseTopic", None)))
        check(getattr(received, "ResponseTopic", None) == response_topic, "QoS %d: response topic" % qos)
        out("QOS%d CORRELATION_DATA %s" % (qos, getattr(received, "CorrelationData", b"").hex()))
        check(getattr(received, "CorrelationData", None) == CORRELATION_DATA, "QoS %d: correlation data" % qos)
        out("QOS%d PAYLOAD_FORMAT_INDICATOR %r" % (qos, getattr(received, "PayloadFormatIndicator", None)))
        check(getattr(received, "PayloadFormatIndicator", None) == 1, "QoS %d: payload format indicator" % qos)
        expiry = getattr(received, "MessageExpiryInterval", None)
        out("QOS%d MESSAGE_EXPIRY %r" % (qos, expiry))
        check(expiry is not None, "QoS %d: message expiry interval dropped" % qos)
        # Delivered at once: it may have lost a second to rounding, not more.
        check(MESSAGE_EXPIRY_S - 1 <= expiry <= MESSAGE_EXPIRY_S, "QoS %d: message expiry %d" % (qos, expiry))
        check(not hasattr(received, "TopicAlias"), "QoS %d: a topic alias the subscriber did not allow" % qos)
        check(not hasattr(received, "SubscriptionIdentifier"), "QoS %d: a subscription identifier" % qos)
    publisher.disconnect()
    subscriber.disconnect()
    out("OK")


if __name__ == "__main__":
    main()
