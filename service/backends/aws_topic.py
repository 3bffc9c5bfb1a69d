"""The events topic on SNS: each job event is one Publish with filterable attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from service.backends.aws_clients import aws_call

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import MessageAttributeValueTypeDef


class SnsTopic:
    """An :class:`~service.ports.EventTopic` on one SNS topic."""

    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._client = client
        self.topic_arn = topic_arn

    async def publish(self, message: str, attributes: Mapping[str, str]) -> str:
        """Publish ``message``; the attributes are String message attributes."""
        values: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        }
        with aws_call(f"sns Publish {self.topic_arn}"):
            response = await self._client.publish(
                TopicArn=self.topic_arn, Message=message, MessageAttributes=values
            )
        return response["MessageId"]
