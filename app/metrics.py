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
# --- publish ---
DELIVERIES = Counter(
    "alert_history_deliveries_total",
    "Deliveries to targets by outcome: delivered, dead_lettered, already_delivered, already_dead_lettered, superseded",
    ["target", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "alert_history_delivery_seconds", "Time from a delivery taken by its target's lane to the target's 2xx",
    ["target"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)  # fmt: skip
DELIVERY_RETRIES = Counter("alert_history_delivery_retries_total", "Delivery attempts retried", ["target"])
BREAKER_STATE = Gauge(
    "alert_history_breaker_state", "Circuit breaker of each target: 0 closed, 1 half-open, 2 open", ["target"]
)
NOTIFY_DEAD_LETTERS = Counter(
    "alert_history_notify_dead_letters_total",
    "Deliveries put on the notify dead-letter topic, by target and reason "
    "(retries_exhausted, breaker_open, fatal, queue_full, follows_firing; unreadable messages: target '')",
    ["target", "reason"],
)
PENDING_DELIVERIES = Gauge(
    "alert_history_pending_deliveries", "Deliveries taken by a target's lane and not ended yet", ["target"]
)
# --- ui: the live stream (/events) and what the operators' dashboard reads (deploy/) ---
EVENT_STREAMS = Gauge("alert_history_event_streams", "Open /events streams on this node")
EVENT_STREAM_DROPS = Counter(
    "alert_history_event_stream_drops_total",
    "/events clients dropped: slow (queue over ALERT_HISTORY_EVENTS_CLIENT_BUFFER), write_timeout, reader (its Kafka "
    "reader failed)",
    ["reason"],
)
EVENT_STREAM_SENT = Counter("alert_history_event_stream_sent_total", "Events sent to /events clients")
CONSUMER_LAG = Gauge(
    "alert_history_consumer_lag",
    "Messages of the topic not yet stored in PostgreSQL, per partition this worker owns (high watermark minus "
    "the sink's next offset)",
    ["partition"],
)
ASSIGNED_PARTITIONS = Gauge("alert_history_assigned_partitions", "Partitions of the topic this worker owns")
