"""QoS 1 (or 0) messages from a paho client, run INSIDE the test machine with Debian's
paho-mqtt (1.6 or 2.x), instead of `mosquitto_pub -l`, which sometimes never exits once its
input ends (eclipse-mosquitto/mosquitto#1448, #2739):

    python3 stream.py TOPIC COUNT [RATE] [--qos Q] [--start S]

publishes {"seq": S..S+COUNT-1} on TOPIC, RATE a second (0, the default: as fast as it can).
Prints one JSON line once every message is acknowledged (QoS 0: written), or after 120 s:
sent, acked, and the PUBACK reason codes paho 2.x reports (16: no matching subscribers).
"""
import argparse
import json
import threading
import time

import paho.mqtt.client as paho

parser = argparse.ArgumentParser()
parser.add_argument("topic")
parser.add_argument("count", type=int)
parser.add_argument("rate", type=float, nargs="?", default=0.0)
parser.add_argument("--qos", type=int, default=1)
parser.add_argument("--start", type=int, default=1)
args = parser.parse_args()
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
infos, began = [], time.monotonic()
for n in range(args.count):
    if args.rate:
        time.sleep(max(0.0, began + (n + 1) / args.rate - time.monotonic()))
    infos.append(client.publish(args.topic, json.dumps({"seq": args.start + n}), qos=args.qos))
deadline = time.monotonic() + 120
for info in infos:
    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
print(json.dumps({"sent": len(infos), "acked": sum(i.is_published() for i in infos),
                  "reasons": reasons}))
client.disconnect()
client.loop_stop()
