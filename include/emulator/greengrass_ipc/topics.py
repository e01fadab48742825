"""Topic matching, as MQTT brokers and the Greengrass cores match topics against filters.

- MQTT filters (OASIS MQTT 3.1.1, section 4.7): ``+`` matches exactly one level, ``#`` (last)
  matches the parent level and any number of levels below it. Greengrass V1 subscriptions use
  these in their ``Subject``.
- Greengrass V2 authorization resources for ``aws.greengrass.ipc.mqttproxy``: a topic string
  where ``*`` matches any run of characters (nucleus 2.6.0+, "Wildcards in authorization
  policies") and the MQTT wildcards ``+`` and ``#`` match levels as above ("Publish/subscribe
  AWS IoT Core MQTT messages": "You can use MQTT topic wildcards (# and +) to match multiple
  resources").
"""

from __future__ import annotations

import re


def mqtt_filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter ``topic_filter``."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return index == len(filter_levels) - 1
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def _level_pattern(level: str) -> str:
    return ".*".join(re.escape(part) for part in level.split("*"))


def resource_matches(resource: str, topic: str) -> bool:
    """Whether an mqttproxy authorization ``resource`` allows ``topic``.

    ``*`` alone allows every topic; inside a string it matches any characters (``/`` included);
    ``+`` and ``#`` levels are MQTT wildcards.
    """
    if resource == "*" or resource == topic:
        return True
    if "*" not in resource:
        return mqtt_filter_matches(resource, topic)
    if "+" not in resource.split("/") and "#" not in resource.split("/"):
        return re.fullmatch(_level_pattern(resource), topic, flags=re.DOTALL) is not None
    pattern = []
    levels = resource.split("/")
    for index, level in enumerate(levels):
        if level == "#" and index == len(levels) - 1:
            pattern.append("(/.*)?" if index else ".*")
            continue
        separator = "/" if index else ""
        if level == "+":
            pattern.append(separator + "[^/]*")
        else:
            pattern.append(separator + _level_pattern(level))
    return re.fullmatch("".join(pattern), topic, flags=re.DOTALL) is not None
