"""A steady QoS 1 stream, run INSIDE the test machine with Debian's paho-mqtt (1.6 or 2.x):

    python3 stream.py TOPIC COUNT RATE     # {"seq": 1..COUNT} on TOPIC, RATE a second

Prints one JSON line when every message is acknowledged (or after 120 s): sent, acked, and
the PUBACK reason codes paho 2.x reports (16: no matching subscribers)."""
import json
import sys
import threading
import time

import paho.mqtt.client as paho

topic, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
reasons: dict = {}
connected = threading.Event()
if hasattr(paho, "CallbackAPIVersion"):
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

    def on_publish(client, userdata, mid, reason, properties):
        code = int(getattr(reason, "value", reason) or 0)
        reasons[code] = reasons.get(code, 0) + 1
    client.on_publish = on_publish
else:
    client = paho.Client(protocol=paho.MQTTv5)
client.on_connect = lambda *a: connected.set()
client.max_inflight_messages_set(100)
client.connect("127.0.0.1", 1883)
client.loop_start()
connected.wait(30)
infos, start = [], time.monotonic()
for seq in range(1, count + 1):
    time.sleep(max(0.0, start + seq / rate - time.monotonic()))
    infos.append(client.publish(topic, json.dumps({"seq": seq}), qos=1))
deadline = time.monotonic() + 120
for info in infos:
    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
print(json.dumps({"sent": len(infos), "acked": sum(i.is_published() for i in infos),
                  "reasons": reasons}))
client.disconnect()
client.loop_stop()
