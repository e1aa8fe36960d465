-- alerts.labels loses its GIN index. Every upsert that is not a HOT update (each transition: status and
-- startsAt are in alerts_firing) added an entry per label to it (its cost: docs/performance.md).
--
-- Its only reader was the Alertmanager v2 list, which reads the firing alerts through alerts_firing
-- and checks the matchers on each of them, as Alertmanager itself does in memory. History queries
-- by label keep alert_events' GIN index.
DROP INDEX IF EXISTS alerts_labels;
