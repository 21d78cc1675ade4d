"""Request/reply over MQTT 5: each request is answered on its response topic."""
import os

from routemq import Message
from routemq.router import Router

router = Router()


@router.on("rpc/{device}/get", shared=True, worker_count=2, qos=1)
async def get(device: str, payload, client, message: Message):
    await message.reply({"device": device, "echo": payload,
                         "pid": os.getpid(),
                         "user_properties": message.user_properties},
                        user_properties=[("served-by", "reply-app")])
