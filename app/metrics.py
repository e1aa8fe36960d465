"""Prometheus metrics, all `alert_history_*`, defined in one place."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("alert_history_events_total", "Alert messages processed, by dedup decision", ["decision"])
RESENDS = Counter(
    "alert_history_resends_total", "Duplicates decided from their digest, not decoded (byte-identical resends)"
)
DEAD_LETTERS = Counter("alert_history_dead_letters_total", "Messages sent to the dead-letter topic")
REKEYED = Counter("alert_history_rekeyed_total", "Messages re-keyed to the partition of their fingerprint")
BATCH_SECONDS = Histogram(
    "alert_history_batch_seconds", "Time to process and store one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
# rate() of each phase shows where a worker's time goes; "wait" is between batches (the consumer delivering).
BATCH_PHASE_SECONDS = Counter(
    "alert_history_batch_phase_seconds", "Time spent in each phase of the batch pipeline", ["phase"]
)
BATCH_SIZE = Histogram(
    "alert_history_batch_size", "Messages per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
)
EVENTS_PUBLISHED = Counter(
    "alert_history_events_published_total", "New stored events put on the events topic (repeats after a crash too)"
)
ACCEPTED = Counter(
    "alert_history_accepted_alerts_total", "Alerts accepted over HTTP and acknowledged by Kafka", ["endpoint"]
)
REJECTED = Counter("alert_history_rejected_requests_total", "HTTP requests rejected", ["endpoint", "status"])
LIVE_FINGERPRINTS = Gauge("alert_history_live_fingerprints", "Fingerprints held in the dedup table (local)")
EXPIRED = Counter("alert_history_state_expired_total", "Fingerprint states expired from the dedup table")
HOLES_FILLED = Counter(
    "alert_history_hole_messages_total", "Messages the consumer skipped, read back from Kafka and processed in order"
)
PARTITIONS_DROPPED = Counter("alert_history_partitions_dropped_total", "Daily alert_events partitions dropped")

# --- enrich ---
LLM_REQUESTS = Counter(
    "alert_history_llm_requests_total",
    "LLM classification requests by outcome (anything but ok fell back on the rules)", ["outcome"],
)  # fmt: skip
LLM_SECONDS = Histogram(
    "alert_history_llm_request_seconds", "Time of an answered LLM classification, waiting for a slot included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
CLASSIFICATION_CACHE = Counter(
    "alert_history_classification_cache_total", "Classification cache lookups, by result (hit, miss)", ["result"]
)
CLASSIFIED = Counter("alert_history_events_classified_total", "Events classified, by source", ["source"])
FILTER_DECISIONS = Counter(
    "alert_history_filter_decisions_total",
    "Filter decisions on events, by action (allow, deny, delay; cancelled: a resolve that cancelled a delayed "
    "firing, so neither is published)", ["action"],
)  # fmt: skip
DELAYED_PENDING = Gauge("alert_history_delayed_events", "Delayed firing events waiting for their delay to end")
NOTIFY_PRODUCED = Counter("alert_history_notify_published_total", "Messages put on the notify topic")
ENRICH_SKIPPED = Counter(
    "alert_history_enrich_skipped_total",
    "Events of the events topic not enriched, by reason (replayed: already decided; missing: no such row; bad)",
    ["reason"],
)  # fmt: skip
