import pytest

from agents.enrich import classify, severity
from tests.factories import event


@pytest.mark.parametrize(
    ("alertname", "summary", "description", "expected"),
    [
        ("Watchdog", "", "", "heartbeat"),
        ("DeadMansSwitch", "", "", "heartbeat"),
        ("TargetDown", "", "", "availability"),
        ("KubePodCrashLooping", "", "", "availability"),
        ("InstanceDown", "", "", "availability"),  # "down" at the end of a word
        ("NodeFilesystemAlmostFull", "", "", "saturation"),
        ("HighCPU", "", "", "saturation"),
        ("APIHighLatency", "", "", "latency"),
        ("KafkaConsumerLag", "consumer lag is high", "", "latency"),
        ("HTTP5xxRate", "", "", "errors"),
        ("CertificateExpiry", "", "", "certificate"),
        ("Probe", "UNAUTHORIZED requests", "", "security"),  # any case: the text is lowercased once
        ("Probe", "", "the TLS handshake broke", "certificate"),  # the description counts too
        ("Watchdog", "target down", "", "heartbeat"),  # first rule wins
        ("Alert136", "Alert136 on host2536:9100", "", "other"),
        ("", "", "", "other"),
    ],
)
def test_classification_rules_in_order(alertname: str, summary: str, description: str, expected: str) -> None:
    annotations = {k: v for k, v in (("summary", summary), ("description", description)) if v}
    e = event(labels={"alertname": alertname} if alertname else {"job": "x"}, annotations=annotations)
    assert classify(e) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"severity": "critical"}, "critical"),
        ({"severity": " Page "}, "critical"),
        ({"severity": "P3"}, "warning"),
        ({"priority": "low"}, "info"),
        ({"severity": "sev-whatever"}, "unknown"),
        ({"alertname": "NoSeverity"}, "none"),
    ],
)
def test_severity_aliases(labels: dict[str, str], expected: str) -> None:
    assert severity(event(labels=labels)) == expected
