"""Exit 0 when the Kafka broker at argv[1] answers a metadata request and can create a topic; else exit 1."""

import asyncio
import logging
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def main(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return 0 if cluster.get("brokers") and cluster.get("controller_id", -1) != -1 else 1
    except Exception:
        return 1
    finally:
        await admin.close()


if __name__ == "__main__":
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(main(sys.argv[1])))
